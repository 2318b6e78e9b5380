//! The callgrind file reader: one pass over the bytes, line by line, allocating only for names
//! and the per-function cost lists. The readings of the format it implements are in the
//! module docs of [`super`].

use std::collections::{HashMap, HashSet};

use super::{Call, Callgrind, Function, ParseError, ParseErrorKind};

type Kind = ParseErrorKind;

/// Parses a callgrind output file (`--dump-instr=yes`) into per-function costs of its first
/// event.
///
/// Several parts are summed. A file cut off in its last line is read up to the last complete
/// line and flagged [`Callgrind::truncated`]; it is an error only if no cost line remains.
pub fn parse(bytes: &[u8]) -> Result<Callgrind, ParseError> {
    // Only complete lines are read: a last line without its newline may be cut anywhere.
    let body_end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |last| last + 1);
    let (body, tail) = bytes.split_at(body_end);
    let cut = !tail.iter().all(u8::is_ascii_whitespace);
    let mut p = Parser::new();
    let mut line_no = 0;
    let mut any_line = false;
    let mut rest = body;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let mut line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or_default();
        line_no += 1;
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        if !any_line {
            any_line = !line.iter().all(u8::is_ascii_whitespace);
        }
        p.line(line).map_err(|kind| ParseError { line: line_no, kind })?;
    }
    if !any_line && !cut {
        return Err(ParseError { line: 0, kind: Kind::Empty });
    }
    let truncated = cut || p.pending_call.is_some();
    let last_line = line_no + usize::from(cut);
    if truncated && p.functions.is_empty() {
        return Err(ParseError { line: last_line, kind: Kind::Truncated });
    }
    p.finish(truncated).map_err(|kind| ParseError { line: 0, kind })
}

/// An interned string: an index into `Parser::strings`.
type Sym = usize;

/// The `"???"` object of functions whose `ob=` is unknown.
const UNKNOWN: Sym = 0;

/// The three name-compression id tables of the format.
#[derive(Clone, Copy)]
enum Space {
    Object,
    File,
    Function,
}

/// What the next cost line is for.
#[derive(Clone, Copy)]
struct PendingCall {
    callee: usize,
    count: u64,
}

/// `positions:` as column indices. At most `instr`, `bb` and `line`, each once.
#[derive(Clone, Copy)]
struct Columns {
    count: usize,
    instr: usize,
}

struct Building {
    object: Sym,
    name: Sym,
    self_cost: Vec<(u64, u64)>,
    calls: Vec<Call>,
    entry: Option<u64>,
}

struct Parser {
    strings: Vec<String>,
    string_ids: HashMap<String, Sym>,
    objects: HashMap<u64, Sym>,
    /// File names are not kept, only which ids are defined.
    files: HashSet<u64>,
    function_names: HashMap<u64, Sym>,

    events: Option<Vec<String>>,
    /// `None` until a `positions:` line: the format's default, `line`, has no addresses.
    columns: Option<Columns>,
    part_summary: Option<u64>,
    part_totals: Option<u64>,
    totals: Option<u64>,
    missing_totals: bool,

    object: Sym,
    /// Whether an `ob=` came after the last `fn=` (for the error message only).
    object_since_function: bool,
    function: Option<usize>,
    called_object: Option<Sym>,
    called_name: Option<Sym>,
    pending_call: Option<PendingCall>,
    after_jump: bool,
    /// The subpositions of the last self-cost line.
    last: [u64; 3],

    function_ids: HashMap<(Sym, Sym), usize>,
    functions: Vec<Building>,
}

impl Parser {
    fn new() -> Parser {
        let mut p = Parser {
            strings: Vec::new(),
            string_ids: HashMap::new(),
            objects: HashMap::new(),
            files: HashSet::new(),
            function_names: HashMap::new(),
            events: None,
            columns: None,
            part_summary: None,
            part_totals: None,
            totals: None,
            missing_totals: false,
            object: UNKNOWN,
            object_since_function: false,
            function: None,
            called_object: None,
            called_name: None,
            pending_call: None,
            after_jump: false,
            last: [0; 3],
            function_ids: HashMap::new(),
            functions: Vec::new(),
        };
        let unknown = p.intern("???");
        debug_assert_eq!(unknown, UNKNOWN);
        p
    }

    fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.string_ids.get(s) {
            return id;
        }
        let id = self.strings.len();
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    fn line(&mut self, line: &[u8]) -> Result<(), Kind> {
        let line = trim_start(line);
        let Some(&first) = line.first() else { return Ok(()) };
        match first {
            b'#' => Ok(()),
            b'0'..=b'9' | b'+' | b'-' | b'*' => self.cost_line(line),
            _ => {
                if self.pending_call.is_some() {
                    return Err(Kind::MissingCallCost);
                }
                self.after_jump = false;
                let key_len = line.iter().position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'));
                match key_len.map(|n| (&line[..n], line[n])) {
                    Some((key, b'=')) if !key.is_empty() => self.specification(key, &line[key.len() + 1..]),
                    Some((key, b':')) if !key.is_empty() => self.header(key, &line[key.len() + 1..]),
                    // A header with a key of several words, such as old callgrinds'
                    // `timeframe (BB):`, means nothing here either.
                    _ if first.is_ascii_alphabetic() && line.contains(&b':') => Ok(()),
                    _ => Err(Kind::Unrecognized(snippet(line))),
                }
            }
        }
    }

    fn header(&mut self, key: &[u8], value: &[u8]) -> Result<(), Kind> {
        match key {
            b"events" => {
                let names: Vec<String> =
                    tokens(value).map(|t| String::from_utf8_lossy(t).into_owned()).collect();
                let Some(first) = names.first() else { return Err(Kind::NoEventNames) };
                match &self.events {
                    Some(known) => {
                        if known.first() != Some(first) {
                            return Err(Kind::EventsDiffer {
                                first: known.first().cloned().unwrap_or_default(),
                                found: first.clone(),
                            });
                        }
                        // A new part: close the previous one.
                        self.close_part()?;
                    }
                    None => self.events = Some(names),
                }
                self.reset_position();
            }
            b"positions" => {
                let mut count = 0;
                let mut seen = [false; 3];
                let mut instr = None;
                for t in tokens(value) {
                    let kind = match t {
                        b"instr" => 0,
                        b"bb" => 1,
                        b"line" => 2,
                        _ => return Err(Kind::UnknownPosition(snippet(t))),
                    };
                    if std::mem::replace(&mut seen[kind], true) {
                        return Err(Kind::UnknownPosition(snippet(t)));
                    }
                    if kind == 0 {
                        instr = Some(count);
                    }
                    count += 1;
                }
                let Some(instr) = instr else {
                    return Err(Kind::NoInstructionAddresses {
                        positions: String::from_utf8_lossy(trim(value)).into_owned(),
                    });
                };
                self.columns = Some(Columns { count, instr });
                self.reset_position();
            }
            b"summary" => self.part_summary = first_number(value)?,
            b"totals" => self.part_totals = first_number(value)?,
            // Only at the start of a file: a concatenated file brings its own name tables.
            b"version" => {
                self.objects.clear();
                self.files.clear();
                self.function_names.clear();
            }
            // cmd, pid, part, thread, creator, desc, event, ...: nothing to keep.
            _ => {}
        }
        Ok(())
    }

    fn close_part(&mut self) -> Result<(), Kind> {
        if self.part_summary.is_some() && self.part_totals.is_none() {
            self.missing_totals = true;
        }
        if let Some(t) = self.part_totals.take().or(self.part_summary.take()) {
            let sum = self.totals.unwrap_or(0).checked_add(t).ok_or(Kind::CostOverflow)?;
            self.totals = Some(sum);
        }
        self.part_summary = None;
        Ok(())
    }

    fn reset_position(&mut self) {
        self.last = [0; 3];
        self.object = UNKNOWN;
        self.object_since_function = false;
        self.function = None;
        self.called_object = None;
        self.called_name = None;
        self.after_jump = false;
    }

    fn specification(&mut self, key: &[u8], value: &[u8]) -> Result<(), Kind> {
        match key {
            b"ob" => {
                self.object = self.name(Space::Object, key, value)?;
                self.object_since_function = true;
                self.function = None;
                self.called_object = None;
                self.called_name = None;
            }
            b"fn" => {
                let name = self.name(Space::Function, key, value)?;
                self.function = Some(self.function_index(self.object, name));
                self.object_since_function = false;
                self.called_object = None;
                self.called_name = None;
            }
            b"cob" => self.called_object = Some(self.name(Space::Object, key, value)?),
            b"cfn" => self.called_name = Some(self.name(Space::Function, key, value)?),
            b"fl" | b"fi" | b"fe" | b"cfi" | b"cfl" => {
                self.name(Space::File, key, value)?;
            }
            // `rcalls=` is the same as `calls=` in old files.
            b"calls" | b"rcalls" => {
                let mut t = tokens(value);
                let count = t.next().ok_or(Kind::InvalidCall).and_then(number)?;
                let Some(columns) = self.columns else { return Err(self.no_addresses()) };
                // The target position is the callee's entry address.
                let target = self.positions(&mut t, columns).map_err(|e| match e {
                    Kind::MissingPositions { .. } => Kind::InvalidCall,
                    e => e,
                })?;
                let name = self.called_name.ok_or(Kind::CallWithoutCallee)?;
                let object = self.called_object.take().unwrap_or(self.object);
                let callee = self.function_index(object, name);
                self.functions[callee].entry.get_or_insert(target[columns.instr]);
                self.pending_call = Some(PendingCall { callee, count });
            }
            // The source line that follows these has no costs and does not move positions.
            b"jump" | b"jcnd" => self.after_jump = true,
            // jfi=, jfn=, frfn=, rec=, ln=, bb=, mp= and what future versions add: no costs.
            _ => {}
        }
        Ok(())
    }

    /// Resolves `(id) name`, `(id)` or `name` in `space`, defining the id if a name is given.
    fn name(&mut self, space: Space, spec: &[u8], value: &[u8]) -> Result<Sym, Kind> {
        let value = trim(value);
        let compressed = value.first() == Some(&b'(') && value.get(1).is_some_and(u8::is_ascii_digit);
        if !compressed {
            let name = if value.is_empty() { "???".into() } else { String::from_utf8_lossy(value) };
            return Ok(self.intern(&name));
        }
        let close = value.iter().position(|&b| b == b')').ok_or_else(|| Kind::InvalidName(snippet(value)))?;
        let id = decimal(&value[1..close])?;
        let name = trim(&value[close + 1..]);
        if name.is_empty() {
            let found = match space {
                Space::Object => self.objects.get(&id).copied(),
                Space::File => self.files.contains(&id).then_some(UNKNOWN),
                Space::Function => self.function_names.get(&id).copied(),
            };
            return found.ok_or_else(|| Kind::UndefinedId { spec: snippet(spec), id });
        }
        let sym = match space {
            Space::File => UNKNOWN,
            _ => self.intern(&String::from_utf8_lossy(name)),
        };
        // A redefinition replaces the old name, as in KCachegrind.
        match space {
            Space::Object => {
                self.objects.insert(id, sym);
            }
            Space::File => {
                self.files.insert(id);
            }
            Space::Function => {
                self.function_names.insert(id, sym);
            }
        }
        Ok(sym)
    }

    fn function_index(&mut self, object: Sym, name: Sym) -> usize {
        *self.function_ids.entry((object, name)).or_insert_with(|| {
            self.functions.push(Building {
                object,
                name,
                self_cost: Vec::new(),
                calls: Vec::new(),
                entry: None,
            });
            self.functions.len() - 1
        })
    }

    fn no_addresses(&self) -> Kind {
        Kind::NoInstructionAddresses { positions: "line".into() }
    }

    /// Reads the positions of a line, relative to the last self-cost line, without moving it.
    fn positions<'a>(
        &self,
        t: &mut impl Iterator<Item = &'a [u8]>,
        columns: Columns,
    ) -> Result<[u64; 3], Kind> {
        let mut pos = [0u64; 3];
        for (i, p) in pos.iter_mut().enumerate().take(columns.count) {
            let tok = t.next().ok_or(Kind::MissingPositions { expected: columns.count, found: i })?;
            let last = self.last[i];
            *p = match tok[0] {
                b'*' if tok.len() == 1 => Some(last),
                b'+' => last.checked_add(relative(tok)?),
                b'-' => last.checked_sub(relative(tok)?),
                _ => Some(number(tok)?),
            }
            .ok_or_else(|| Kind::PositionOutOfRange(snippet(tok)))?;
        }
        Ok(pos)
    }

    fn cost_line(&mut self, line: &[u8]) -> Result<(), Kind> {
        if self.events.is_none() {
            return Err(Kind::CostBeforeEvents);
        }
        let Some(columns) = self.columns else { return Err(self.no_addresses()) };
        let mut t = tokens(line);
        let pos = self.positions(&mut t, columns)?;
        let cost = match t.next() {
            Some(c) => number(c)?,
            None => {
                if std::mem::take(&mut self.after_jump) {
                    return Ok(());
                }
                0
            }
        };
        // The other events are not kept, but a corrupt line should not pass for a good one.
        for c in t {
            number(c)?;
        }
        self.after_jump = false;
        let Some(f) = self.function else {
            return Err(if self.object_since_function {
                Kind::CostWithoutFunction
            } else {
                Kind::CostBeforeFunction
            });
        };
        let addr = pos[columns.instr];
        let building = &mut self.functions[f];
        if let Some(PendingCall { callee, count }) = self.pending_call.take() {
            building.calls.push(Call { site: addr, callee, count, inclusive: cost });
            return Ok(());
        }
        self.last = pos;
        if cost == 0 {
            return Ok(());
        }
        match building.self_cost.last_mut() {
            Some(last) if last.0 == addr => last.1 = last.1.checked_add(cost).ok_or(Kind::CostOverflow)?,
            _ => building.self_cost.push((addr, cost)),
        }
        Ok(())
    }

    fn finish(mut self, truncated: bool) -> Result<Callgrind, Kind> {
        let Some(events) = self.events.take() else { return Err(Kind::NoEvents) };
        self.close_part()?;
        let mut functions = Vec::with_capacity(self.functions.len());
        for b in std::mem::take(&mut self.functions) {
            functions.push(Function {
                name: self.strings[b.name].clone(),
                object: self.strings[b.object].clone(),
                self_cost: sum_self(b.self_cost)?,
                calls: sum_calls(b.calls)?,
                entry: b.entry,
            });
        }
        Ok(Callgrind { events, totals: self.totals, functions, truncated: truncated || self.missing_totals })
    }
}

fn sum_self(mut v: Vec<(u64, u64)>) -> Result<Vec<(u64, u64)>, Kind> {
    v.sort_unstable_by_key(|&(a, _)| a);
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (a, c) in v {
        match out.last_mut() {
            Some(last) if last.0 == a => last.1 = last.1.checked_add(c).ok_or(Kind::CostOverflow)?,
            _ => out.push((a, c)),
        }
    }
    Ok(out)
}

fn sum_calls(mut v: Vec<Call>) -> Result<Vec<Call>, Kind> {
    v.sort_unstable_by_key(|c| (c.site, c.callee));
    let mut out: Vec<Call> = Vec::with_capacity(v.len());
    for c in v {
        match out.last_mut() {
            Some(last) if (last.site, last.callee) == (c.site, c.callee) => {
                last.count = last.count.checked_add(c.count).ok_or(Kind::CostOverflow)?;
                last.inclusive = last.inclusive.checked_add(c.inclusive).ok_or(Kind::CostOverflow)?;
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    &s[start..]
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let end = s.iter().rposition(|&b| !is_space(b)).map_or(0, |e| e + 1);
    &s[..end]
}

/// The space- or tab-separated words of `s`.
fn tokens(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    s.split(|&b| is_space(b)).filter(|t| !t.is_empty())
}

fn first_number(value: &[u8]) -> Result<Option<u64>, Kind> {
    tokens(value).next().map(number).transpose()
}

/// A decimal or `0x` hexadecimal number.
fn number(tok: &[u8]) -> Result<u64, Kind> {
    match tok.strip_prefix(b"0x").or_else(|| tok.strip_prefix(b"0X")) {
        Some(hex) => digits(hex, 16, tok),
        None => digits(tok, 10, tok),
    }
}

fn decimal(tok: &[u8]) -> Result<u64, Kind> {
    digits(tok, 10, tok)
}

/// The magnitude of a `+N` or `-N` subposition.
fn relative(tok: &[u8]) -> Result<u64, Kind> {
    let d = &tok[1..];
    match d.strip_prefix(b"0x").or_else(|| d.strip_prefix(b"0X")) {
        Some(hex) => digits(hex, 16, tok),
        None => digits(d, 10, tok),
    }
}

fn digits(d: &[u8], radix: u32, whole: &[u8]) -> Result<u64, Kind> {
    if d.is_empty() {
        return Err(Kind::InvalidNumber(snippet(whole)));
    }
    let mut v: u64 = 0;
    for &b in d {
        let digit = (b as char).to_digit(radix).ok_or_else(|| Kind::InvalidNumber(snippet(whole)))?;
        v = v
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or_else(|| Kind::NumberTooLarge(snippet(whole)))?;
    }
    Ok(v)
}

/// `s` for an error message: lossy UTF-8, at most 60 characters.
fn snippet(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.into_owned(),
    }
}
