//! Reading valgrind's callgrind output: [`parse()`] turns the text file into per-function,
//! per-instruction costs and call edges, and [`synthesize()`] turns that call graph into weighted
//! call stacks that a pprof profile with an `instructions` sample type can be built from.
//!
//! Both parts are pure: they take bytes or the parsed [`Callgrind`] and return data. The module
//! reads no files, runs nothing and symbolizes nothing; the caller runs valgrind
//! (`--dump-instr=yes` is required) and resolves the returned addresses.
//!
//! # Format
//!
//! The [callgrind format](https://valgrind.org/docs/manual/cl-format.html) as valgrind writes
//! it, with these readings where the specification leaves room:
//!
//! - A function is identified by its object (`ob=`, or `cob=` for a callee; `"???"` when no
//!   object is given) and its name; the source files (`fl=`, `fi=`, `fe=`, `cfi=`, `cfl=`) only
//!   feed the name tables. Name compression (`fn=(12) name`, later `fn=(12)`) has one id table
//!   per kind: objects (`ob`, `cob`), files (`fl`, `fi`, `fe`, `cfi`, `cfl`) and functions
//!   (`fn`, `cfn`). A `version:` line starts a new file, so several files concatenated into one
//!   buffer keep their tables apart.
//! - Relative subpositions (`+4`, `-12`, `*`) are relative to the previous *self-cost* line.
//!   The cost line after `calls=`, the target on the `calls=` line itself and the source line
//!   after `jump=`/`jcnd=` are read relative to it but do not move it: that is how callgrind's
//!   writer (`callgrind/dump.c`) emits them, and a real profile mislocates addresses if they do.
//! - Several parts (each starting with its own `events:` line) are summed into the same
//!   functions; they must count the same first event.
//! - A file whose last line has no newline (valgrind stopped mid-write) is read up to its last
//!   complete line and flagged [`Callgrind::truncated`]; so is one whose last part has a
//!   `summary:` but no closing `totals:`, or ends on a `calls=` line.
//!
//! # Synthesizing stacks
//!
//! Callgrind records how much each call edge cost in total, not the stacks it ran on, so the
//! stacks are rebuilt with a context-insensitive split in the style of gprof: a function's cost
//! is divided among the paths that reach it in proportion to the inclusive cost each caller's
//! edge carries. For a function `F`, let `I'(F)` be its self cost plus the inclusive cost of
//! its calls to *other* functions (a direct self call `F→F` is left out: the inner invocations'
//! self cost is already in `F`'s, so this stays exact). A function whose `I'(F)` exceeds the
//! inclusive cost of the calls into it is a root and starts with a flow of that excess: every
//! function nobody calls (`_start`, with all of `I'`), and a thread's start function, whose
//! creating call (`clone3` -> `start_thread`) callgrind charges with the parent thread's cost
//! only. Roots are expanded largest first. Depth first, a path ending in `F` with flow `w`
//! emits, for each address `a` of `F`, the stack `[a, call sites of the path innermost first]`
//! with value `w·self(a)/I'(F)`, and follows each call edge `(site s, callee G, inclusive c)`
//! whose callee is not already on the path with flow `w·c/I'(F)`. Cycles through other
//! functions are therefore cut where they close.
//!
//! Expansion stops below [`SynthOptions::min_flow`], beyond [`SynthOptions::max_depth`] and
//! once [`SynthOptions::max_stacks`] is reached. Whatever cost of an address was not emitted
//! that way (pruned, cut cycles, functions no root reaches) is emitted as a *detached* stack
//! `[a]`, and the values of each address's stacks are rounded together with the largest
//! remainder method. Hence, exactly and in integers, the stacks whose leaf is address `a` of
//! function `F` sum to `F`'s self cost at `a`; inclusive costs are as close as the call graph
//! allows.
//!
//! Call counts are split along the same paths: a call edge's count goes to the paths of its
//! caller in proportion to their flow, as its inclusive cost does, and is rounded per edge so
//! that the stacks of each call site sum to exactly its count.
//!
//! The runner has callgrind write one graph per thread (`--separate-threads=yes`), and each is
//! synthesized alone: in one graph for the whole process, a function that two threads call
//! (`fmt::write`, `memcpy`) splits its callees' cost between them in proportion to their calls,
//! so the work of one thread moves the totals of another's functions. libtest's main thread
//! formats the elapsed time while the test runs on its own thread, a different number of
//! instructions at every run: on semver's suite that alone shifted test functions' totals by up
//! to 5% between identical builds.

mod parse;
mod stacks;

pub use parse::parse;
pub use stacks::synthesize;

use thiserror::Error;

/// The costs of one callgrind profile, summed over all its parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Callgrind {
    /// Event names of the `events:` line; the first is the one every cost here counts.
    pub events: Vec<String>,
    /// The first event's total from `totals:` (else `summary:`), summed over the parts that
    /// have one; `None` when no part has either.
    pub totals: Option<u64>,
    /// Every function with self cost, calls, or that is called, in order of first appearance.
    pub functions: Vec<Function>,
    /// The file ended early (see the module docs); what was read before is kept.
    pub truncated: bool,
}

impl Callgrind {
    /// Sum of all self costs, the figure `totals:` should equal.
    pub fn self_total(&self) -> u128 {
        self.functions.iter().map(Function::self_total).sum()
    }

    /// Index into [`Callgrind::functions`] of the function `name` in the object whose path is
    /// `object`.
    pub fn find(&self, object: &str, name: &str) -> Option<usize> {
        self.functions.iter().position(|f| f.object == object && f.name == name)
    }

    /// Calls into each function (indices of [`Callgrind::functions`]), recursive calls
    /// included, summed over every call site, saturating.
    pub fn calls_into(&self) -> Vec<u64> {
        let mut into = vec![0u64; self.functions.len()];
        for c in self.functions.iter().flat_map(|f| &f.calls) {
            if let Some(n) = into.get_mut(c.callee) {
                *n = n.saturating_add(c.count);
            }
        }
        into
    }
}

/// A function (an object and a name) and its costs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Function {
    /// The name as callgrind wrote it (valgrind demangles names itself).
    pub name: String,
    /// Path of the object (`ob=`), `"???"` when unknown.
    pub object: String,
    /// `(instruction address, self cost)` of the first event, summed per address, sorted by
    /// address, without zero costs. Addresses are as callgrind writes them: for objects with
    /// debug information, relative to the object's load bias (the address in the ELF file).
    pub self_cost: Vec<(u64, u64)>,
    /// Calls this function makes, summed per `(site, callee)` and sorted that way.
    pub calls: Vec<Call>,
    /// The function's entry address, where calls to it land (the target of the first `calls=`
    /// line naming it), in the same address space as [`Function::self_cost`]; `None` when
    /// nothing recorded a call to it.
    pub entry: Option<u64>,
}

impl Function {
    /// Sum of [`Function::self_cost`].
    pub fn self_total(&self) -> u128 {
        self.self_cost.iter().map(|&(_, c)| u128::from(c)).sum()
    }
}

/// Calls from one call site to one callee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Call {
    /// Address of the call instruction, in the calling function.
    pub site: u64,
    /// Index of the called function in [`Callgrind::functions`].
    pub callee: usize,
    /// How many times the call was made.
    pub count: u64,
    /// Inclusive cost (first event) of those calls.
    pub inclusive: u64,
}

/// A callgrind file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{kind}", line_prefix(*line))]
pub struct ParseError {
    /// 1-based line the problem is on; 0 when it concerns the whole file.
    pub line: usize,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

fn line_prefix(line: usize) -> String {
    if line == 0 { String::new() } else { format!("line {line}: ") }
}

/// What made a callgrind file unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseErrorKind {
    /// No line at all.
    #[error("the callgrind file is empty")]
    Empty,
    /// No `events:` line anywhere.
    #[error("no `events:` line, so this is not a callgrind profile")]
    NoEvents,
    /// A cost line comes before the `events:` line.
    #[error("cost line before the `events:` line")]
    CostBeforeEvents,
    /// The file was cut off before anything usable.
    #[error("the callgrind file is cut off before its first cost line")]
    Truncated,
    /// `events:` names no event.
    #[error("`events:` names no event")]
    NoEventNames,
    /// A later part counts a different first event.
    #[error("this part counts `{found}` first, but an earlier part counts `{first}`")]
    EventsDiffer {
        /// First event of the first part.
        first: String,
        /// First event of this part.
        found: String,
    },
    /// The positions carry no instruction addresses.
    #[error(
        "positions are `{positions}`, without instruction addresses; run callgrind with \
         --dump-instr=yes"
    )]
    NoInstructionAddresses {
        /// The positions in force (`line` when the file has no `positions:` line).
        positions: String,
    },
    /// A `positions:` line names something other than `instr`, `bb` and `line`, or one twice.
    #[error("invalid `positions:` entry `{0}` (expected each of instr, bb, line at most once)")]
    UnknownPosition(String),
    /// A cost line before the first `fn=`.
    #[error("cost line before any `fn=`")]
    CostBeforeFunction,
    /// A cost line after an `ob=` that no `fn=` followed.
    #[error("cost line with no current function (no `fn=` since the last `ob=`)")]
    CostWithoutFunction,
    /// Fewer positions than `positions:` declares.
    #[error("expected {expected} position(s), found {found}")]
    MissingPositions {
        /// Positions declared.
        expected: usize,
        /// Positions on the line.
        found: usize,
    },
    /// Not a decimal or `0x` hexadecimal number.
    #[error("`{0}` is not a number")]
    InvalidNumber(String),
    /// A number beyond 64 bits.
    #[error("`{0}` does not fit in 64 bits")]
    NumberTooLarge(String),
    /// A relative position below zero or beyond 64 bits.
    #[error("relative position `{0}` leaves the 64-bit range")]
    PositionOutOfRange(String),
    /// A compressed name like `(12` without its `)`.
    #[error("malformed compressed name `{0}`")]
    InvalidName(String),
    /// A compressed name reference to an id never defined.
    #[error("`{spec}=({id})` refers to an id that was never defined")]
    UndefinedId {
        /// The specification, e.g. `cfn`.
        spec: String,
        /// The id.
        id: u64,
    },
    /// `calls=` not of the form `calls=<count> <target position>`.
    #[error("malformed `calls=` line (expected `calls=<count> <target position>`)")]
    InvalidCall,
    /// `calls=` with no `cfn=` before it.
    #[error("`calls=` without a `cfn=` naming the callee")]
    CallWithoutCallee,
    /// `calls=` followed by something other than its cost line.
    #[error("`calls=` is not followed by its cost line")]
    MissingCallCost,
    /// A line that is no comment, header, specification or cost line.
    #[error("unrecognized line `{0}`")]
    Unrecognized(String),
    /// Summed costs or counts beyond 64 bits.
    #[error("summed costs overflow 64 bits")]
    CostOverflow,
}

/// Limits of [`synthesize()`].
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Call paths whose flow falls below this are not followed. `None`: a 100 000th of the
    /// total self cost, at least 1.
    pub min_flow: Option<f64>,
    /// Longest stack (in frames) built by following calls.
    pub max_depth: usize,
    /// At most this many stacks are emitted, and this many call paths expanded, by following
    /// calls; detached stacks (at most one per address) come on top.
    pub max_stacks: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions { min_flow: None, max_depth: 256, max_stacks: 2_000_000 }
    }
}

/// A weighted call stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stack {
    /// Leaf first: `frames[0]` is the instruction address the cost is at, then the addresses
    /// of the call instructions (not return addresses) of the path, outermost caller last.
    pub frames: Vec<u64>,
    /// `functions[i]` is the index in [`Callgrind::functions`] of the function `frames[i]`
    /// belongs to, which gives the object to symbolize it in (addresses alone are ambiguous
    /// across objects).
    pub functions: Vec<usize>,
    /// The cost, in the first event's unit.
    pub value: u64,
    /// The call path of this cost is not known (see the module docs); the caller should hang
    /// it under a synthetic frame such as `[call path not recorded]`.
    pub detached: bool,
}

/// Stacks synthesized from a call graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synthesized {
    /// The stacks, no two with the same frames, functions and `detached`, in a deterministic
    /// order: the depth-first order of the expansion, then detached stacks by function and
    /// address.
    pub stacks: Vec<Stack>,
    /// Sum of the values of the detached stacks.
    pub detached_cost: u64,
    /// Call counts as stacks: `frames[0]` is the callee's entry address (the outermost function
    /// there is the one called), then the call sites of the path, split like the costs. The
    /// stacks of one call sum to exactly its count; where no path was expanded the count is in
    /// a detached stack `[entry]`. Calls to functions without a known entry are left out.
    pub calls: Vec<Stack>,
    /// Sum of all stack values, which is the sum of all self costs (saturating at `u64::MAX`).
    pub total: u64,
}

#[cfg(test)]
mod tests;
