//! Weighted call stacks from callgrind's call graph: the gprof-style split, the deficit rule
//! and the rounding described in the module docs of [`super`].

use super::{Callgrind, Stack, SynthOptions, Synthesized};

/// Parent of a root path.
const NO_PARENT: usize = usize::MAX;

/// One call path of the expansion tree: `func` reached from the path `parent` by the call
/// instruction `site` of the parent's function.
struct Node {
    parent: usize,
    site: u64,
    func: usize,
}

/// Part of the self cost of one address (`leaf`, an index into the flattened self costs)
/// attributed to the path `node`.
struct Emission {
    node: usize,
    leaf: usize,
    value: f64,
}

/// Part of the calls of one call (`call`, an index into the flattened calls) attributed to the
/// path `node`: the path into the callee, or for a recursive call (`recursive`) the path of the
/// function calling itself.
struct CallEmission {
    node: usize,
    call: usize,
    value: f64,
    recursive: bool,
}

/// A path being expanded: its function, its tree node, `flow / I'(func)`, and the next call
/// edge to follow.
struct Frame {
    func: usize,
    node: usize,
    ratio: f64,
    depth: usize,
    next_edge: usize,
}

/// A call edge to another function: `(site, callee, inclusive cost, index among the caller's
/// calls)`.
type Edge = (u64, usize, f64, usize);

/// The depth-first expansion from the roots and what it emitted.
struct Expansion<'a> {
    cg: &'a Callgrind,
    edges: &'a [Vec<Edge>],
    /// I'(F) per function.
    inclusive: &'a [f64],
    /// Index of each function's first address among the flattened self costs.
    leaf_base: &'a [usize],
    /// Index of each function's first call among the flattened calls.
    call_base: &'a [usize],
    max_stacks: usize,
    nodes: Vec<Node>,
    emissions: Vec<Emission>,
    calls: Vec<CallEmission>,
    on_path: Vec<bool>,
    stack: Vec<Frame>,
}

impl Expansion<'_> {
    /// Expands every path from `root`, which starts with `flow`. False once the budget is spent,
    /// which ends the whole expansion.
    fn expand(&mut self, root: usize, flow: f64, min_flow: f64, max_depth: usize) -> bool {
        if !self.enter(NO_PARENT, 0, root, flow, 1, None) {
            return false;
        }
        while let Some(top) = self.stack.last_mut() {
            let Some(&(site, callee, c, call)) = self.edges[top.func].get(top.next_edge) else {
                self.on_path[top.func] = false;
                self.stack.pop();
                continue;
            };
            top.next_edge += 1;
            let flow = top.ratio * c;
            // Written so that a NaN `min_flow` stops rather than expands everything.
            let enough = flow > 0.0 && flow >= min_flow;
            if !enough || self.on_path[callee] || top.depth >= max_depth || self.inclusive[callee] <= 0.0 {
                continue;
            }
            let (node, depth) = (top.node, top.depth + 1);
            let calls = (
                self.call_base[top.func] + call,
                top.ratio * self.cg.functions[top.func].calls[call].count as f64,
            );
            if !self.enter(node, site, callee, flow, depth, Some(calls)) {
                return false;
            }
        }
        true
    }

    /// Enters `func` on a new path with `flow`, reached by `(call, calls)` of its parent (none for
    /// a root): emits its self cost and calls and queues its calls. False, and nothing emitted,
    /// when that would exceed the budget.
    fn enter(
        &mut self,
        parent: usize,
        site: u64,
        func: usize,
        flow: f64,
        depth: usize,
        calls: Option<(usize, f64)>,
    ) -> bool {
        let self_cost = &self.cg.functions[func].self_cost;
        if self.nodes.len() >= self.max_stacks || self.emissions.len() + self_cost.len() > self.max_stacks {
            return false;
        }
        let node = self.nodes.len();
        self.nodes.push(Node { parent, site, func });
        let ratio = flow / self.inclusive[func];
        let base = self.leaf_base[func];
        for (i, &(_, c)) in self_cost.iter().enumerate() {
            if c > 0 {
                self.emissions.push(Emission { node, leaf: base + i, value: ratio * c as f64 });
            }
        }
        if let Some((call, value)) = calls {
            self.calls.push(CallEmission { node, call, value, recursive: false });
        }
        for (i, c) in self.cg.functions[func].calls.iter().enumerate() {
            if c.callee == func && c.count > 0 {
                let call = self.call_base[func] + i;
                self.calls.push(CallEmission { node, call, value: ratio * c.count as f64, recursive: true });
            }
        }
        self.on_path[func] = true;
        self.stack.push(Frame { func, node, ratio, depth, next_edge: 0 });
        true
    }
}

/// Splits the call graph of `cg` into weighted stacks (see the module docs of [`super`]).
///
/// The stacks whose leaf is address `a` of a function sum to exactly that function's self
/// cost at `a`; the result is the same, in the same order, for the same input.
pub fn synthesize(cg: &Callgrind, options: &SynthOptions) -> Synthesized {
    let funcs = &cg.functions;
    let n = funcs.len();

    // Calls to other functions that exist (a hand-built graph may point anywhere), as f64.
    let edges: Vec<Vec<Edge>> = funcs
        .iter()
        .enumerate()
        .map(|(f, func)| {
            func.calls
                .iter()
                .enumerate()
                .filter(|(_, c)| c.callee != f && c.callee < n)
                .map(|(i, c)| (c.site, c.callee, c.inclusive as f64, i))
                .collect()
        })
        .collect();
    // Cost reaching each function through the calls callgrind recorded.
    let mut incoming = vec![0.0f64; n];
    for e in edges.iter().flatten() {
        incoming[e.1] += e.2;
    }
    // I'(F): self cost plus the inclusive cost of calls to other functions.
    let inclusive: Vec<f64> = funcs
        .iter()
        .zip(&edges)
        .map(|(f, e)| f.self_total() as f64 + e.iter().map(|&(_, _, c, _)| c).sum::<f64>())
        .collect();
    let (mut leaf_base, mut call_base) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut leaves, mut all_calls) = (0, 0);
    for f in funcs {
        leaf_base.push(leaves);
        leaves += f.self_cost.len();
        call_base.push(all_calls);
        all_calls += f.calls.len();
    }
    let total_self: u128 = funcs.iter().map(|f| f.self_total()).sum();
    let min_flow = options.min_flow.unwrap_or((total_self as f64 / 100_000.0).max(1.0));

    let mut x = Expansion {
        cg,
        edges: &edges,
        inclusive: &inclusive,
        leaf_base: &leaf_base,
        call_base: &call_base,
        max_stacks: options.max_stacks,
        nodes: Vec::new(),
        emissions: Vec::new(),
        calls: Vec::new(),
        on_path: vec![false; n],
        stack: Vec::new(),
    };
    // Roots: functions whose cost exceeds what their recorded calls brought in. That is every
    // function nobody calls (`_start`), and also a thread's start function: callgrind charges the
    // call that created the thread (`clone3` -> `start_thread`) with the parent thread's cost
    // only, so the child thread's work has to enter the graph at its own root. The largest roots
    // are expanded first, so the budget goes where the cost is.
    let mut roots: Vec<(usize, f64)> = (0..n)
        .map(|f| (f, inclusive[f] - incoming[f]))
        .filter(|&(f, excess)| inclusive[f] > 0.0 && excess > 0.0 && excess >= min_flow.min(inclusive[f]))
        .collect();
    roots.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if options.max_depth > 0 {
        for (root, flow) in roots {
            if !x.expand(root, flow, min_flow, options.max_depth) {
                break;
            }
        }
    }
    let Expansion { nodes, emissions, calls, .. } = x;

    // Per address: the emitted parts plus the deficit, rounded to the exact self cost.
    let mut start = vec![0usize; leaves + 1];
    for e in &emissions {
        start[e.leaf + 1] += 1;
    }
    for i in 0..leaves {
        start[i + 1] += start[i];
    }
    let mut order = vec![0usize; emissions.len()];
    let mut fill = start.clone();
    for (i, e) in emissions.iter().enumerate() {
        order[fill[e.leaf]] = i;
        fill[e.leaf] += 1;
    }
    let mut rounded = vec![0u64; emissions.len()];
    let mut detached = vec![0u64; leaves];
    let mut weights = Vec::new();
    for (f, func) in funcs.iter().enumerate() {
        for (i, &(_, exact)) in func.self_cost.iter().enumerate() {
            let leaf = leaf_base[f] + i;
            let parts = &order[start[leaf]..start[leaf + 1]];
            weights.clear();
            weights.extend(parts.iter().map(|&e| emissions[e].value));
            let (shares, rest) = round_with_deficit(&mut weights, exact);
            for (&e, &v) in parts.iter().zip(&shares) {
                rounded[e] = v;
            }
            detached[leaf] = rest;
        }
    }

    let mut out = Synthesized::default();
    let mut total: u128 = 0;
    for (e, &value) in emissions.iter().zip(&rounded) {
        if value == 0 {
            continue;
        }
        let func = nodes[e.node].func;
        let addr = funcs[func].self_cost[e.leaf - leaf_base[func]].0;
        let (frames, functions) = path(&nodes, e.node, (addr, func));
        total += u128::from(value);
        out.stacks.push(Stack { frames, functions, value, detached: false });
    }
    out.calls = call_stacks(funcs, &nodes, &calls, &call_base, all_calls);
    let mut detached_cost: u128 = 0;
    for (f, func) in funcs.iter().enumerate() {
        for (i, &(addr, _)) in func.self_cost.iter().enumerate() {
            let value = detached[leaf_base[f] + i];
            if value > 0 {
                detached_cost += u128::from(value);
                out.stacks.push(Stack { frames: vec![addr], functions: vec![f], value, detached: true });
            }
        }
    }
    out.detached_cost = saturate(detached_cost);
    out.total = saturate(total + detached_cost);
    out
}

/// The frames and functions of the path `node`, from `first`: `first` itself, then the call
/// sites of the path innermost first.
fn path(nodes: &[Node], node: usize, first: (u64, usize)) -> (Vec<u64>, Vec<usize>) {
    let (mut frames, mut functions) = (vec![first.0], vec![first.1]);
    let mut cur = node;
    while nodes[cur].parent != NO_PARENT {
        frames.push(nodes[cur].site);
        cur = nodes[cur].parent;
        functions.push(nodes[cur].func);
    }
    (frames, functions)
}

/// Call-count stacks: per call, its emitted parts plus the deficit (detached), rounded to the
/// exact count. A stack starts at the callee's entry; a recursive call's stack then has the
/// recursive call site before the path of the function.
fn call_stacks(
    funcs: &[super::Function],
    nodes: &[Node],
    emissions: &[CallEmission],
    call_base: &[usize],
    all_calls: usize,
) -> Vec<Stack> {
    let mut per_call: Vec<Vec<usize>> = vec![Vec::new(); all_calls];
    for (i, e) in emissions.iter().enumerate() {
        per_call[e.call].push(i);
    }
    let mut out = Vec::new();
    let mut detached = Vec::new();
    let mut weights = Vec::new();
    for (f, func) in funcs.iter().enumerate() {
        for (j, call) in func.calls.iter().enumerate() {
            let Some(entry) = funcs.get(call.callee).and_then(|c| c.entry) else { continue };
            let parts = &per_call[call_base[f] + j];
            weights.clear();
            weights.extend(parts.iter().map(|&e| emissions[e].value));
            let (shares, rest) = round_with_deficit(&mut weights, call.count);
            for (&e, &value) in parts.iter().zip(&shares) {
                let e = &emissions[e];
                if value == 0 {
                    continue;
                }
                let (mut frames, mut functions) = path(nodes, e.node, (entry, call.callee));
                if e.recursive {
                    frames.insert(1, call.site);
                    functions.insert(1, f);
                }
                out.push(Stack { frames, functions, value, detached: false });
            }
            if rest > 0 {
                detached.push(Stack {
                    frames: vec![entry],
                    functions: vec![call.callee],
                    value: rest,
                    detached: true,
                });
            }
        }
    }
    out.append(&mut detached);
    out
}

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The emitted parts `weights` rounded to integers that, with what they fall short of `exact` as
/// one more part (the detached rest), sum to exactly `exact`: the parts' integers, then the rest
/// (0 when nothing falls short).
fn round_with_deficit(weights: &mut Vec<f64>, exact: u64) -> (Vec<u64>, u64) {
    let parts = weights.len();
    let deficit = exact as f64 - weights.iter().sum::<f64>();
    if deficit > 0.0 {
        weights.push(deficit);
    }
    let mut shares = apportion(weights, exact);
    let rest = if deficit > 0.0 { shares.get(parts).copied().unwrap_or(0) } else { 0 };
    shares.truncate(parts);
    (shares, rest)
}

/// Integers proportional to `weights` that sum to exactly `target`, by the largest remainder
/// method; ties go to the earlier weight. Weights that are not positive get nothing unless all
/// are, in which case the last weight gets everything.
pub(super) fn apportion(weights: &[f64], target: u64) -> Vec<u64> {
    if weights.len() == 1 {
        return vec![target];
    }
    let clean = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
    let sum: f64 = weights.iter().map(|&w| clean(w)).sum();
    let mut out = vec![0u64; weights.len()];
    let Some(last) = out.len().checked_sub(1) else { return out };
    if sum <= 0.0 || !sum.is_finite() {
        out[last] = target;
        return out;
    }
    let scale = target as f64 / sum;
    let mut remainders: Vec<(f64, usize)> = Vec::with_capacity(weights.len());
    let mut assigned: u128 = 0;
    for (i, &w) in weights.iter().enumerate() {
        let share = clean(w) * scale;
        let floor = share.floor();
        // `as` saturates; a float share can exceed `target` only by rounding.
        let whole = (floor as u64).min(target);
        out[i] = whole;
        assigned += u128::from(whole);
        remainders.push((share - floor, i));
    }
    let target_wide = u128::from(target);
    if assigned == target_wide {
        return out;
    }
    // Largest remainder first, earlier index on ties.
    remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    if assigned < target_wide {
        let mut left = saturate(target_wide - assigned);
        // More units left than weights only happens through float error on huge values.
        let len = remainders.len() as u64;
        if left > len {
            out[remainders[0].1] += left - len;
            left = len;
        }
        for &(_, i) in remainders.iter().take(left as usize) {
            out[i] += 1;
        }
    } else {
        let mut excess = saturate(assigned - target_wide);
        for &(_, i) in remainders.iter().rev() {
            let take = out[i].min(excess);
            out[i] -= take;
            excess -= take;
            if excess == 0 {
                break;
            }
        }
    }
    out
}
