//! Unwinding from the unwind tables (`.eh_frame`, indexed by `.eh_frame_hdr`) that every ELF
//! object on Linux ships, for code built without frame pointers: C libraries (zlib, OpenSSL,
//! glibc), assembly, and Rust built with cargo's default release flags.
//!
//! Owns the module list, the unwinder caches and the walk. The work is split so that the signal
//! handler neither allocates nor locks:
//! - [`load`] (not async-signal-safe: at start) lists the loaded objects with `dl_iterate_phdr`,
//!   hands each one's `.eh_frame_hdr` and `.eh_frame` to `framehop` (see below for which are read
//!   in place and which are copied), preallocates a pool of caches, and publishes the unwinder
//!   through an atomic pointer. A later [`load`] (the preload library's `dlopen` and `dlclose`
//!   call [`refresh`]) that finds the objects changed publishes a new unwinder and retires the old
//!   one. A program that links the agent in (no preload) does not see its `dlopen`s: stacks
//!   through libraries it loads later fall back to frame pointers there until the next start.
//! - [`walk`] takes a cache from the pool with one compare-and-swap (none free: the caller falls
//!   back to frame pointers) and unwinds frame by frame, each by the rule of its address: the
//!   CFI row where there is one, the frame pointer where there is none. Every stack read is
//!   bounds-checked against the thread's stack; the walk stops at the first frame that does not
//!   move the stack pointer up, at the output's capacity, or at an unreadable or unknown frame,
//!   and says whether the stack is complete.
//!
//! Libraries come and go (`dlopen`, `dlclose`, and the ones glibc loads and unloads itself for
//! NSS and iconv, which no interposer sees), and a signal handler must never read a table that
//! was unmapped under it. So the tables of the objects loaded when the agent first looked (the
//! program and its startup libraries, which are never unloaded) are read in place, and those of
//! every object found later are copied into memory the agent owns: a walk with an unwinder that
//! still lists a library since closed reads the copy, never the closed library. A stale entry can
//! only name code mapped later at the same address wrongly, until the next [`load`] (after every
//! `dlopen` and `dlclose` the preload library sees, and at every window) drops it.
//!
//! An unwinder that a newer one replaced is freed once no walk can still hold it: walks hold a
//! cache slot of the pool while they run, so the publisher waits (bounded) until every slot busy
//! when it published has been released; a walk that takes a slot after that sees the new one.
//! If a slot stays busy past the bound, the old unwinder is kept (counted), never freed early.

use core::cell::UnsafeCell;
use core::ops::{Deref, Range};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use framehop::{
    CacheNative, ExplicitModuleSectionInfo, FrameAddress, Module, MustNotAllocateDuringUnwind,
    UnwindRegsNative, Unwinder as _, UnwinderNative,
};

use crate::unwind::{Start, Walked};

type Unwinder = UnwinderNative<Section, MustNotAllocateDuringUnwind>;
type Cache = CacheNative<MustNotAllocateDuringUnwind>;

/// The bytes of an unwind section: in place in an object that is never unloaded, or a copy.
#[derive(Clone, Default)]
enum Section {
    /// No bytes (framehop's default for the sections it is not given).
    #[default]
    Empty,
    Mapped(&'static [u8]),
    Copied(Arc<[u8]>),
}

impl Deref for Section {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Section::Empty => &[],
            Section::Mapped(b) => b,
            Section::Copied(b) => b,
        }
    }
}

/// The start addresses of the objects' code seen at the first [`load`]: their tables are read in
/// place.
static STARTUP: OnceLock<Vec<u64>> = OnceLock::new();
/// Copies of the sections of objects found later, by (code start, section start), reused by the
/// next [`load`] while the object stays at that address; only [`load`] touches it.
static COPIES: Mutex<Option<Copies>> = Mutex::new(None);
/// See [`COPIES`].
type Copies = HashMap<(u64, u64), Arc<[u8]>>;
/// Unwinders kept because a walk held a slot past the bound when they were replaced.
pub(crate) static KEPT: AtomicU64 = AtomicU64::new(0);

/// An unwinder and the code ranges of its modules, sorted.
struct Published {
    unwinder: Unwinder,
    code: Vec<Range<u64>>,
}

impl Published {
    /// Whether `addr` lies in the code of a known object.
    fn knows(&self, addr: u64) -> bool {
        let i = self.code.partition_point(|r| r.start <= addr);
        i > 0 && addr < self.code[i - 1].end
    }
}

/// The published unwinder; null until [`load`] ran.
static UNWINDER: AtomicPtr<Published> = AtomicPtr::new(core::ptr::null_mut());
/// Whether walks use the tables (set by [`load`], cleared by [`disable`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Caches for walks in progress at once (signal handlers on several threads, allocation hooks).
/// A walk that finds none free uses frame pointers.
const POOL: usize = 16;

struct Slot {
    busy: AtomicBool,
    cache: UnsafeCell<Option<Box<Cache>>>,
}

// SAFETY: `cache` is only touched by the holder of `busy` (taken with a compare-and-swap), or by
// `load` before the slot is first published as filled.
unsafe impl Sync for Slot {}

static CACHES: [Slot; POOL] =
    [const { Slot { busy: AtomicBool::new(false), cache: UnsafeCell::new(None) } }; POOL];

/// Lists the loaded objects and publishes an unwinder for them (see the module docs). Not
/// async-signal-safe; call at start. Cheap when nothing new was loaded.
pub(crate) fn load() {
    for slot in &CACHES {
        if !slot.busy.swap(true, Ordering::Acquire) {
            // SAFETY: this thread holds `busy`.
            let cache = unsafe { &mut *slot.cache.get() };
            if cache.is_none() {
                *cache = Some(Box::new(Cache::new_in()));
            }
            slot.busy.store(false, Ordering::Release);
        }
    }
    let mut found: Vec<Found> = Vec::new();
    // SAFETY: the callback only reads the program headers it is given and pushes onto `found`.
    unsafe { libc::dl_iterate_phdr(Some(add_object), (&raw mut found).cast()) };
    let startup = STARTUP.get_or_init(|| found.iter().map(|f| f.avma.start).collect());
    let mut copies = COPIES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let copies = copies.get_or_insert_with(HashMap::new);
    let mut kept_copies = HashMap::new();
    let mut modules = Vec::with_capacity(found.len());
    for f in found {
        let in_place = startup.contains(&f.avma.start);
        let mut section = |bytes: &'static [u8]| -> Section {
            if in_place {
                return Section::Mapped(bytes);
            }
            let key = (f.avma.start, bytes.as_ptr() as u64);
            let copy =
                copies.get(&key).filter(|c| c.len() == bytes.len()).cloned().unwrap_or_else(|| bytes.into());
            kept_copies.insert(key, Arc::clone(&copy));
            Section::Copied(copy)
        };
        let (hdr, frame) = (section(f.eh_frame_hdr), section(f.eh_frame));
        let sections = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: Some(f.text.clone()),
            eh_frame_svma: Some(f.eh_frame_svma.clone()),
            eh_frame: Some(frame),
            eh_frame_hdr_svma: Some(f.hdr_svma.clone()),
            eh_frame_hdr: Some(hdr),
            ..Default::default()
        };
        modules.push(Module::new(f.name, f.avma, f.bias, sections));
    }
    // Copies of objects no longer loaded go with the unwinders that still list them.
    *copies = kept_copies;
    let mut code: Vec<Range<u64>> = modules.iter().map(Module::avma_range).collect();
    code.sort_unstable_by_key(|r| r.start);
    let published = UNWINDER.load(Ordering::Acquire);
    // SAFETY: a published unwinder is freed only by `retire`, which runs under `COPIES`' lock
    // held here. The same objects at the same addresses: keep it.
    if published.is_null() || unsafe { (*published).code != code } {
        let mut unwinder = Unwinder::new();
        for m in modules {
            unwinder.add_module(m);
        }
        let new = Box::into_raw(Box::new(Published { unwinder, code }));
        let old = UNWINDER.swap(new, Ordering::SeqCst);
        retire(old);
    }
    ENABLED.store(true, Ordering::Release);
}

/// Frees `old`, a replaced unwinder, once no walk can hold it (see the module docs).
fn retire(old: *mut Published) {
    if old.is_null() {
        return;
    }
    let deadline = crate::sys::clock_ns(libc::CLOCK_MONOTONIC) + 200_000_000;
    for slot in &CACHES {
        while slot.busy.load(Ordering::SeqCst) {
            if crate::sys::clock_ns(libc::CLOCK_MONOTONIC) > deadline {
                KEPT.fetch_add(1, Ordering::Relaxed);
                return;
            }
            std::thread::yield_now();
        }
    }
    // SAFETY: `old` came from `Box::into_raw` in `load`, is no longer published, and every walk
    // that could have loaded it has released its slot.
    drop(unsafe { Box::from_raw(old) });
}

/// [`load`] again when the tables are in use (after a `dlopen`): objects loaded since are added.
pub(crate) fn refresh() {
    if ENABLED.load(Ordering::Acquire) {
        load();
    }
}

/// Turns the tables off: walks use frame pointers until the next [`load`].
pub(crate) fn disable() {
    ENABLED.store(false, Ordering::Release);
}

/// Whether [`load`] published an unwinder. Async-signal-safe.
pub(crate) fn ready() -> bool {
    !UNWINDER.load(Ordering::Acquire).is_null() && ENABLED.load(Ordering::Acquire)
}

/// One loaded object with an `.eh_frame_hdr`, its sections where they are mapped.
struct Found {
    name: String,
    avma: Range<u64>,
    bias: u64,
    text: Range<u64>,
    hdr_svma: Range<u64>,
    eh_frame_svma: Range<u64>,
    eh_frame_hdr: &'static [u8],
    eh_frame: &'static [u8],
}

/// The `dl_iterate_phdr` callback: one [`Found`] per object with an `.eh_frame_hdr`.
unsafe extern "C" fn add_object(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the loader passes a valid `dl_phdr_info` and our `Vec` through `data`.
    let (info, found) = unsafe { (&*info, &mut *data.cast::<Vec<Found>>()) };
    // SAFETY: as above; the headers stay valid while the object is loaded (the loader's lock is
    // held during the callback, and sections are copied before it returns where needed).
    if let Some(f) = unsafe { module(info) } {
        found.push(f);
    }
    0
}

/// The sections of one loaded object, read in place.
///
/// # Safety
/// `info` describes an object that is loaded (as `dl_iterate_phdr` passes it).
unsafe fn module(info: &libc::dl_phdr_info) -> Option<Found> {
    if info.dlpi_phdr.is_null() || info.dlpi_phnum == 0 {
        return None;
    }
    // SAFETY: the loader's program headers for this object.
    let headers = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let bias = info.dlpi_addr;
    let mut text: Option<Range<u64>> = None;
    let mut hdr: Option<Range<u64>> = None;
    for h in headers {
        let range = h.p_vaddr..h.p_vaddr.checked_add(h.p_memsz)?;
        match h.p_type {
            libc::PT_LOAD if h.p_flags & libc::PF_X != 0 => {
                text = Some(match text {
                    Some(t) => t.start.min(range.start)..t.end.max(range.end),
                    None => range,
                });
            }
            libc::PT_GNU_EH_FRAME => hdr = Some(range),
            _ => {}
        }
    }
    let (text, hdr) = (text?, hdr?);
    // SAFETY: PT_GNU_EH_FRAME lies in a loaded segment of this object, mapped while it is loaded.
    let hdr_bytes: &'static [u8] = unsafe { mapped(bias, &hdr)? };
    let bases = gimli::BaseAddresses::default().set_eh_frame_hdr(hdr.start);
    let parsed = gimli::EhFrameHdr::new(hdr_bytes, gimli::NativeEndian).parse(&bases, 8).ok()?;
    let eh_frame_start = match parsed.eh_frame_ptr() {
        gimli::Pointer::Direct(a) => a,
        gimli::Pointer::Indirect(_) => return None,
    };
    // `.eh_frame` has no length of its own here: it runs at most to the end of its segment.
    let segment_end = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD)
        .map(|h| h.p_vaddr..h.p_vaddr.saturating_add(h.p_memsz))
        .find(|r| r.contains(&eh_frame_start))?
        .end;
    let eh_frame = eh_frame_start..segment_end;
    // SAFETY: inside a loaded segment of this object (found just above).
    let eh_frame_bytes: &'static [u8] = unsafe { mapped(bias, &eh_frame)? };
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a NUL-terminated string owned by the loader.
        unsafe { core::ffi::CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned()
    };
    let avma = bias.checked_add(text.start)?..bias.checked_add(text.end)?;
    Some(Found {
        name,
        avma,
        bias,
        text,
        hdr_svma: hdr,
        eh_frame_svma: eh_frame,
        eh_frame_hdr: hdr_bytes,
        eh_frame: eh_frame_bytes,
    })
}

/// The bytes at the object-relative addresses `range`, where the object was loaded at `bias`.
///
/// # Safety
/// `range` must lie in a loaded segment of an object that stays loaded.
unsafe fn mapped(bias: u64, range: &Range<u64>) -> Option<&'static [u8]> {
    let start = usize::try_from(bias.checked_add(range.start)?).ok()?;
    let len = usize::try_from(range.end.checked_sub(range.start)?).ok()?;
    // SAFETY: the caller's contract.
    (len > 0).then(|| unsafe { core::slice::from_raw_parts(start as *const u8, len) })
}

/// Unwinds from `start` into `out` (return addresses, innermost first).
///
/// `None` when there is no unwinder yet or every cache is in use: the caller walks frame
/// pointers instead. Allocation-free and lock-free: callable from a signal handler.
pub(crate) fn walk(start: Start, out: &mut [u64]) -> Option<Walked> {
    let (lo, hi) = (start.bounds.lo.max(start.sp), start.bounds.hi);
    walk_reading(start, out, |addr: u64| -> Result<u64, ()> {
        let a = usize::try_from(addr).map_err(|_| ())?;
        if a < lo || a.checked_add(8).is_none_or(|end| end > hi) || !a.is_multiple_of(8) {
            return Err(());
        }
        // SAFETY: `[a, a + 8)` lies inside the live part of this thread's stack (checked above),
        // which is mapped; volatile because the interrupted code may be writing it.
        Ok(unsafe { core::ptr::read_volatile(a as *const u64) })
    })
}

/// [`walk`] with the stack read by `read` (which checks its own bounds): another thread's stack
/// is read through a copy (see `remote`).
pub(crate) fn walk_reading(
    start: Start,
    out: &mut [u64],
    read: impl FnMut(u64) -> Result<u64, ()>,
) -> Option<Walked> {
    if !ENABLED.load(Ordering::Acquire) || !start.bounds.contains(start.sp) {
        return None;
    }
    // The slot first, then the unwinder: a `retire` that replaced it waits for the slot.
    let slot = CACHES
        .iter()
        .find(|s| s.busy.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_ok())?;
    let unwinder = UNWINDER.load(Ordering::SeqCst);
    if unwinder.is_null() {
        slot.busy.store(false, Ordering::Release);
        return None;
    }
    // SAFETY: this thread holds `busy`, so `retire` does not free the unwinder it loaded after
    // taking the slot (see the module docs).
    let (cache, unwinder) = unsafe { (&mut *slot.cache.get(), &*unwinder) };
    let walked = cache.as_deref_mut().map(|cache| walk_with(unwinder, cache, start, out, read));
    slot.busy.store(false, Ordering::Release);
    walked
}

fn walk_with(
    published: &Published,
    cache: &mut Cache,
    start: Start,
    out: &mut [u64],
    mut read: impl FnMut(u64) -> Result<u64, ()>,
) -> Walked {
    let Start { pc, sp, fp, skip_below, at_return, .. } = start;
    let unwinder = &published.unwinder;
    let mut regs = UnwindRegsNative::new(pc as u64, sp as u64, fp as u64);
    let mut address = FrameAddress::from_instruction_pointer(pc as u64);
    let mut n = 0;
    if at_return {
        // A return address outside known code has no rule; a leaf's guess does not apply.
        match FrameAddress::from_return_address(pc as u64) {
            Some(a) if published.knows(pc as u64) => address = a,
            _ => return Walked { frames: 0, truncated: true },
        }
    }
    // Code in no object (generated at run time) has no table. A leaf there that has pushed
    // nothing has its return address at the stack pointer: taken when it points into known code,
    // and the walk goes on from the caller by its tables. Otherwise the frame-pointer rule guesses.
    if !at_return
        && !published.knows(pc as u64)
        && let Ok(ret) = read(sp as u64)
        && published.knows(ret)
        && let Some(next) = FrameAddress::from_return_address(ret)
    {
        let caller_sp = sp as u64 + 8;
        if caller_sp as usize > skip_below && !out.is_empty() {
            out[0] = ret;
            n = 1;
        }
        regs.set_sp(caller_sp);
        address = next;
    }
    loop {
        let before = regs.sp();
        let ret = match unwinder.unwind_frame(address, &mut regs, cache, &mut read) {
            Ok(Some(ret)) => ret,
            // The root: its unwind rule says there is no caller.
            Ok(None) => return Walked { frames: n, truncated: false },
            Err(_) => return Walked { frames: n, truncated: true },
        };
        // Each frame's caller lies above it; a rule that does not move up would loop.
        if regs.sp() <= before {
            return Walked { frames: n, truncated: true };
        }
        let Some(next) = FrameAddress::from_return_address(ret) else {
            return Walked { frames: n, truncated: false };
        };
        // A return address outside all known code was read by a guess (the frame-pointer rule
        // in code without a table, such as hand-written assembly using `rbp` as a register).
        if !published.knows(ret) {
            return Walked { frames: n, truncated: true };
        }
        if regs.sp() as usize > skip_below {
            if n == out.len() {
                return Walked { frames: n, truncated: true };
            }
            out[n] = ret;
            n += 1;
        }
        address = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwind::Bounds;

    #[inline(never)]
    fn here(out: &mut [u64]) -> Option<Walked> {
        let (pc, sp, fp) = crate::unwind::registers();
        let (lo, hi) = crate::sys::mapping_containing(sp).expect("the stack's mapping");
        walk(Start { pc, sp, fp, bounds: Bounds { lo, hi }, skip_below: 0, at_return: false }, out)
    }

    #[test]
    fn walks_the_test_threads_own_stack_to_frames_above_it() {
        load();
        assert!(ready());
        let mut out = [0u64; 64];
        let w = here(&mut out).expect("an unwinder and a free cache");
        assert!(w.frames >= 3, "{w:?}");
        // Every frame is a return address into loaded code.
        crate::code::load();
        assert!(out[..w.frames].iter().all(|&a| crate::code::is_code(a as usize)), "{:x?}", &out[..w.frames]);
    }

    #[test]
    fn a_bad_context_stops_cleanly() {
        load();
        let mut out = [0u64; 64];
        let sp = crate::unwind::stack_pointer();
        let bounds = Bounds { lo: sp, hi: sp + 64 };
        // A pc in no object, a frame pointer outside the stack.
        let w = walk(Start { pc: 0x10, sp, fp: 0x20, bounds, skip_below: 0, at_return: false }, &mut out)
            .expect("walked");
        assert!(w.truncated && w.frames == 0, "{w:?}");
        // A stack pointer outside the bounds: nothing is read.
        assert_eq!(
            walk(Start { pc: 0x10, sp: 8, fp: 0, bounds, skip_below: 0, at_return: false }, &mut out),
            None
        );
    }
}
