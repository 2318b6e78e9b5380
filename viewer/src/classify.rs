//! Colour classes of flame graph frames: the crate a function belongs to (the first path segment
//! of its demangled name), with the standard library (by name, or by a source path in the
//! toolchain: std's vendored `hashbrown` is std's) and native code (libc, the runtime, frames
//! without symbols) in classes of their own, and one stable colour per class. Also which frames
//! are the user's own code ([`is_own`]), which the viewer keeps when it collapses the library
//! frames between them.

/// What a frame's colour says about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameClass {
    /// The whole-program root box.
    Root,
    /// `std`, `core`, `alloc` and the other crates shipped with the toolchain.
    Std,
    /// Code without a Rust path: libc, the dynamic loader, the runtime, unsymbolized addresses.
    Native,
    /// A crate of the program or its dependencies, by name.
    Crate(String),
}

/// Crates that ship with the toolchain and are coloured as the standard library.
const STD_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "std_detect",
    "proc_macro",
    "test",
    "panic_unwind",
    "panic_abort",
    "compiler_builtins",
    "rustc_std_workspace_core",
    "unwind",
];

/// Leading path segments that name no crate: primitive types, type constructors (`<fn() as ...>`,
/// `<dyn Trait>`) and generic parameters (`<A as Trait>`, `<T>`, `<_>`): demangled paths of real
/// types start with their crate, and crate names are never capitalized.
fn names_no_crate(segment: &str) -> bool {
    contprof_engine::profile::names::PRIMITIVES.contains(&segment)
        || ["_", "fn", "dyn", "impl"].contains(&segment)
        || segment.starts_with(|c: char| c.is_ascii_uppercase())
}

/// Crates whose frames run the program rather than belong to it: the test and benchmark
/// harnesses, above the test function or benchmark closure.
const HARNESS_CRATES: &[&str] = &["criterion", "libtest_mimic"];

/// Crates whose frames start and schedule a worker thread's work: a worker's stack begins with
/// tens of their frames (rayon's `ThreadBuilder::run`, `main_loop`, `wait_until`, `execute`,
/// `join_context`...) above the user's closure, its prologue as `main`'s runtime is the main
/// thread's.
const SCHEDULER_CRATES: &[&str] =
    &["rayon", "rayon_core", "crossbeam_deque", "crossbeam_epoch", "crossbeam_utils", "threadpool", "tokio"];

/// Source paths of dependencies: crates from a registry or a git repository, as cargo unpacks
/// them under `CARGO_HOME`.
const DEPENDENCY_PATHS: &[&str] = &["/registry/src/", "/git/checkouts/"];

/// Whether a frame is the user's own code: a Rust function of a crate that is neither the
/// toolchain's nor a dependency (by its source file), so a crate of the workspace (or a path
/// dependency next to it). Frames without a source file are not.
pub fn is_own(class: &FrameClass, file: &str) -> bool {
    matches!(class, FrameClass::Crate(_))
        && !class.is_runtime()
        && !file.is_empty()
        && !contprof_engine::profile::names::is_toolchain_source(file)
        && !DEPENDENCY_PATHS.iter().any(|d| file.contains(d))
}

impl FrameClass {
    /// The class of a function by its demangled name and its source file (`""` when unknown): a
    /// function whose source is the toolchain's is the standard library's, whatever its crate
    /// (std's vendored `hashbrown`, `gimli`, libtest's `getopts`).
    pub fn of_function(name: &str, file: &str) -> FrameClass {
        if contprof_engine::profile::names::is_toolchain_source(file) {
            FrameClass::Std
        } else {
            FrameClass::of(name)
        }
    }

    /// The class of a demangled function name.
    pub fn of(name: &str) -> FrameClass {
        if !name.contains("::") {
            return FrameClass::Native;
        }
        let segment = match first_segment(name) {
            Some(s) if !names_no_crate(s) => Some(s),
            // `<[u8] as core::fmt::Debug>::fmt`, `<&T as Trait>::f`: the trait's crate.
            _ if name.contains(" as ") => name.split_once(" as ").and_then(|(_, rest)| first_segment(rest)),
            // Inherent methods of primitive types (`<u64>::wrapping_add`) live in core.
            Some(s) if contprof_engine::profile::names::PRIMITIVES.contains(&s) => Some("core"),
            _ => None,
        };
        match segment {
            Some(s) if STD_CRATES.contains(&s) => FrameClass::Std,
            Some(s) if !names_no_crate(s) => FrameClass::Crate(s.to_owned()),
            _ => FrameClass::Native,
        }
    }

    /// Whether the class is the runtime: the standard library, native code, or a harness crate.
    /// The frames from the process entry down to the first frame that is not (the user's `main`,
    /// the test function, the benchmark closure) are the program's prologue, which the viewer
    /// folds into one frame.
    pub fn is_runtime(&self) -> bool {
        match self {
            FrameClass::Root => false,
            FrameClass::Std | FrameClass::Native => true,
            FrameClass::Crate(c) => HARNESS_CRATES.contains(&c.as_str()),
        }
    }

    /// Whether a run of leading frames of this class is a thread's prologue ([`is_runtime`]), or a
    /// worker thread's: a thread pool's scheduler (rayon, crossbeam, tokio) above the user's closure.
    ///
    /// [`is_runtime`]: FrameClass::is_runtime
    pub fn is_prologue(&self) -> bool {
        self.is_runtime() || matches!(self, FrameClass::Crate(c) if SCHEDULER_CRATES.contains(&c.as_str()))
    }

    /// The name shown in the legend: the crate, `std` or `native`.
    pub fn label(&self) -> &str {
        match self {
            FrameClass::Root => "all",
            FrameClass::Std => "std",
            FrameClass::Native => "native",
            FrameClass::Crate(c) => c,
        }
    }

    /// The fill colour of the class as CSS `hsl()`: fixed for the root, std and native code,
    /// hashed from the crate name otherwise (stable across runs and pages), always light enough
    /// for black text.
    pub fn color(&self) -> String {
        match self {
            FrameClass::Root => "hsl(220, 10%, 82%)".to_owned(),
            FrameClass::Std => "hsl(38, 45%, 70%)".to_owned(),
            FrameClass::Native => "hsl(0, 0%, 72%)".to_owned(),
            FrameClass::Crate(c) => {
                // FNV-1a: tiny, stable, and spreads similar names apart.
                let h = c.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
                // Skip the tan of std and the greys: hues spread over 0..360 in 24 steps, avoiding 30..50.
                let mut hue = (h % 24) * 15;
                if (30..=45).contains(&hue) {
                    hue += 30;
                }
                let light = 60 + (h / 24 % 3) * 5;
                format!("hsl({hue}, 70%, {light}%)")
            }
        }
    }
}

/// The first path segment of a name, skipping the `<`, `&`, `mut `, `dyn `, `[` of qualified
/// paths; `None` when there is none.
fn first_segment(name: &str) -> Option<&str> {
    let mut s = name.trim_start();
    loop {
        let before = s.len();
        for prefix in ["<", "&", "*const ", "*mut ", "mut ", "dyn ", "impl ", "[", "(", " "] {
            s = s.strip_prefix(prefix).unwrap_or(s);
        }
        if s.len() == before {
            break;
        }
    }
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '.')).unwrap_or(s.len());
    let seg = &s[..end];
    (!seg.is_empty()).then_some(seg)
}
