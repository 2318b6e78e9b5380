//! An encoder for the raw sample file, for tests, benchmarks and tools that synthesize raw
//! files (the agent has its own allocation-free writer).

use contprof_protocol::format::{
    EndRecord, HEADER_LEN, Header, KIND_ALLOC_STACK, KIND_CONTENTION_STACK, KIND_CPU_SAMPLE, KIND_END,
    KIND_LABEL_SET, KIND_LABELS, KIND_MAPS, KIND_MESSAGE, KIND_THREAD_NAME, KIND_WORK, MAGIC, VERSION, pad8,
};

/// Builds the bytes of a raw file, record by record, in the layout of [`contprof_protocol::format`].
#[derive(Debug, Clone)]
pub struct RawWriter {
    buf: Vec<u8>,
}

impl RawWriter {
    /// Starts a file with this header; `magic`, `version` and `header_len` are filled in.
    pub fn new(header: Header) -> Self {
        let header = Header { magic: MAGIC, version: VERSION, header_len: HEADER_LEN as u32, ..header };
        Self { buf: header.to_bytes().to_vec() }
    }

    fn record(&mut self, kind: u32, payload: &[u8]) -> &mut Self {
        let len = pad8(payload.len());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&(len as u32).to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(self.buf.len() + len - payload.len(), 0);
        self
    }

    fn text_record(&mut self, kind: u32, first: u32, text: &str) -> &mut Self {
        let mut p = Vec::with_capacity(8 + text.len());
        p.extend_from_slice(&first.to_ne_bytes());
        p.extend_from_slice(&(text.len() as u32).to_ne_bytes());
        p.extend_from_slice(text.as_bytes());
        self.record(kind, &p)
    }

    /// A CPU sample: `frames[0]` is the interrupted instruction, the rest return addresses.
    pub fn cpu_sample(&mut self, tid: u32, frames: &[u64]) -> &mut Self {
        let mut p = Vec::with_capacity(8 + frames.len() * 8);
        p.extend_from_slice(&tid.to_ne_bytes());
        p.extend_from_slice(&(frames.len() as u32).to_ne_bytes());
        frames.iter().for_each(|f| p.extend_from_slice(&f.to_ne_bytes()));
        self.record(KIND_CPU_SAMPLE, &p)
    }

    /// A thread name.
    pub fn thread_name(&mut self, tid: u32, name: &str) -> &mut Self {
        self.text_record(KIND_THREAD_NAME, tid, name)
    }

    /// A copy of `/proc/self/maps`.
    pub fn maps(&mut self, text: &str) -> &mut Self {
        self.record(KIND_MAPS, text.as_bytes())
    }

    /// An allocation stack: `[alloc_count, alloc_bytes, inuse_count, inuse_bytes]`, return
    /// addresses innermost first.
    pub fn alloc_stack(&mut self, values: [u64; 4], frames: &[u64]) -> &mut Self {
        let mut p = Vec::with_capacity(40 + frames.len() * 8);
        values.iter().for_each(|v| p.extend_from_slice(&v.to_ne_bytes()));
        p.extend_from_slice(&(frames.len() as u32).to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes());
        frames.iter().for_each(|f| p.extend_from_slice(&f.to_ne_bytes()));
        self.record(KIND_ALLOC_STACK, &p)
    }

    /// A contention stack: `[contentions, delay_ns]`, return addresses innermost first.
    pub fn contention_stack(&mut self, values: [u64; 2], frames: &[u64]) -> &mut Self {
        let mut p = Vec::with_capacity(24 + frames.len() * 8);
        values.iter().for_each(|v| p.extend_from_slice(&v.to_ne_bytes()));
        p.extend_from_slice(&(frames.len() as u32).to_ne_bytes());
        p.extend_from_slice(&0u32.to_ne_bytes());
        frames.iter().for_each(|f| p.extend_from_slice(&f.to_ne_bytes()));
        self.record(KIND_CONTENTION_STACK, &p)
    }

    /// A label set's definition: `pairs` in key order, keys unique (as the agent interns them).
    pub fn label_set(&mut self, id: u32, pairs: &[(&str, &str)]) -> &mut Self {
        let mut set = Vec::new();
        for (k, v) in pairs {
            set.extend_from_slice(&(k.len() as u16).to_ne_bytes());
            set.extend_from_slice(&(v.len() as u16).to_ne_bytes());
            set.extend_from_slice(k.as_bytes());
            set.extend_from_slice(v.as_bytes());
        }
        let mut p = Vec::with_capacity(8 + set.len());
        p.extend_from_slice(&id.to_ne_bytes());
        p.extend_from_slice(&(set.len() as u32).to_ne_bytes());
        p.extend_from_slice(&set);
        self.record(KIND_LABEL_SET, &p)
    }

    /// The label set of the next record.
    pub fn labels(&mut self, set: u32) -> &mut Self {
        let mut p = set.to_ne_bytes().to_vec();
        p.extend_from_slice(&[0; 4]);
        self.record(KIND_LABELS, &p)
    }

    /// The label set, span id and trace id of the next record.
    pub fn labels_in_trace(&mut self, set: u32, span_id: u64, trace_id: u128) -> &mut Self {
        let mut p = set.to_ne_bytes().to_vec();
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&span_id.to_ne_bytes());
        p.extend_from_slice(&((trace_id >> 64) as u64).to_ne_bytes());
        p.extend_from_slice(&(trace_id as u64).to_ne_bytes());
        self.record(KIND_LABELS, &p)
    }

    /// Units of work counted under label set `set` (0: no labels).
    pub fn work(&mut self, set: u32, units: u64) -> &mut Self {
        let mut p = set.to_ne_bytes().to_vec();
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&units.to_ne_bytes());
        self.record(KIND_WORK, &p)
    }

    /// The END record.
    pub fn end(&mut self, end: EndRecord) -> &mut Self {
        let p: Vec<u8> = end.to_words().iter().flat_map(|w| w.to_ne_bytes()).collect();
        self.record(KIND_END, &p)
    }

    /// An agent message (level 0 note, 1 warning).
    pub fn message(&mut self, level: u32, text: &str) -> &mut Self {
        self.text_record(KIND_MESSAGE, level, text)
    }

    /// The encoded file.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}
