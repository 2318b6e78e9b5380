//! Parsing real and hand-written callgrind files, and the guarantees of stack synthesis.

use std::collections::{HashMap, HashSet};

use super::stacks::apportion;
use super::*;

/// The blocks of the workload's own object from a valgrind 3.19 run of the `alloc_split`
/// fixture, header kept and `summary:`/`totals:` recomputed for what was kept.
const ALLOC_SPLIT: &[u8] = include_bytes!("testdata/alloc_split.callgrind.out");

fn parse_str(s: &str) -> Result<Callgrind, ParseError> {
    parse(s.as_bytes())
}

fn ok(s: &str) -> Callgrind {
    match parse_str(s) {
        Ok(cg) => cg,
        Err(e) => panic!("{e}\n{s}"),
    }
}

fn err(s: &str) -> ParseError {
    match parse_str(s) {
        Ok(cg) => panic!("parsed: {cg:?}\n{s}"),
        Err(e) => e,
    }
}

fn func<'a>(cg: &'a Callgrind, object: &str, name: &str) -> &'a Function {
    let i = cg.find(object, name).unwrap_or_else(|| panic!("no {object} {name} in {:#?}", cg.functions));
    &cg.functions[i]
}

const HEAD: &str = "# callgrind format\nversion: 1\npositions: instr line\nevents: Ir\n";

#[test]
fn real_profile_has_main_its_calls_and_self_costs_that_add_up_to_totals() {
    let cg = parse(ALLOC_SPLIT).unwrap();
    assert_eq!(cg.events, ["Ir"]);
    assert!(!cg.truncated);
    let object = "/work/main/fixtures/target/contprof/alloc_split";
    let main = func(&cg, object, "alloc_split::main");
    assert!(!main.self_cost.is_empty());
    assert!(main.self_cost.windows(2).all(|w| w[0].0 < w[1].0), "sorted and summed per address");
    assert!(main.self_cost.iter().all(|&(_, c)| c > 0));
    let callees: HashSet<&str> = main.calls.iter().map(|c| cg.functions[c.callee].name.as_str()).collect();
    for name in ["alloc_split::alloc_three", "alloc_split::alloc_one", "alloc_split::exactly_thousand"] {
        assert!(callees.contains(name), "{callees:?}");
    }
    let three =
        main.calls.iter().find(|c| cg.functions[c.callee].name == "alloc_split::alloc_three").unwrap();
    assert_eq!((three.count, three.inclusive), (10, 133_920_856));
    assert_eq!(cg.functions[three.callee].object, object);
    // The call site is in main: its address is within main's own code.
    let (lo, hi) = (main.self_cost[0].0, main.self_cost[main.self_cost.len() - 1].0);
    assert!((lo..=hi).contains(&three.site), "{:#x} not in {lo:#x}..={hi:#x}", three.site);
    // Callees in other objects come from `cob=`.
    assert!(cg.functions.iter().any(|f| f.object.ends_with("libcontprof_preload.so")));
    assert_eq!(cg.totals, Some(1_009_750));
    assert_eq!(cg.self_total(), 1_009_750);
}

#[test]
fn real_profile_synthesizes_exact_self_costs() {
    let cg = parse(ALLOC_SPLIT).unwrap();
    let syn = synthesize(&cg, &SynthOptions::default());
    check_exact(&cg, &syn);
    // main's stacks hang under the Rust runtime's start function.
    let main = cg.find("/work/main/fixtures/target/contprof/alloc_split", "alloc_split::main").unwrap();
    let under_main: u64 = syn.stacks.iter().filter(|s| s.functions.contains(&main)).map(|s| s.value).sum();
    assert!(under_main > 0);
    assert!(syn.stacks.iter().any(|s| s.functions[0] != main && s.functions.contains(&main)));
}

#[test]
fn compressed_and_plain_names_share_functions() {
    let cg = ok(&format!(
        "{HEAD}ob=(1) /lib/a.so\nfl=(1) a.c\nfn=(1) f\n0x10 1 5\ncfi=(2) b.c\ncfn=(2) g\ncalls=1 0x40 1\n\
         * * 7\nfl=(2)\nfn=(2)\n0x40 1 7\nfn=(1)\n0x10 1 2\nob=/lib/a.so\nfn=f\n0x11 1 1\n\
         ob=(2) /lib/b.so\nfn=(1)\n0x10 1 3\n"
    ));
    assert_eq!(cg.functions.len(), 3, "{:#?}", cg.functions);
    let f = func(&cg, "/lib/a.so", "f");
    assert_eq!(f.self_cost, [(0x10, 7), (0x11, 1)]);
    assert_eq!(func(&cg, "/lib/a.so", "g").self_cost, [(0x40, 7)]);
    // Same name, other object: another function.
    assert_eq!(func(&cg, "/lib/b.so", "f").self_cost, [(0x10, 3)]);
}

#[test]
fn function_names_that_start_with_a_parenthesis_are_plain_names() {
    let cg = ok(&format!("{HEAD}fn=(below main)\n0x10 0 4\nfn=(7) (below main)\n0x11 0 1\n"));
    assert_eq!(func(&cg, "???", "(below main)").self_cost, [(0x10, 4), (0x11, 1)]);
}

#[test]
fn relative_positions_follow_the_previous_self_cost_line_across_functions() {
    let cg = ok(&format!(
        "{HEAD}fn=a\n0x1000 10 5\n+4 * 3\n-2 +1 7\n* * 1\n+0x10 -3 2\nfn=b\n+2 * 6\n\tfn=a\n* * 4\n"
    ));
    assert_eq!(
        func(&cg, "???", "a").self_cost,
        [(0x1000, 5), (0x1002, 8), (0x1004, 3), (0x1012, 2), (0x1014, 4)]
    );
    assert_eq!(func(&cg, "???", "b").self_cost, [(0x1014, 6)]);
}

#[test]
fn call_cost_lines_are_inclusive_and_do_not_move_the_position() {
    let cg = ok(&format!(
        "{HEAD}fn=main\n0x100 1 2\ncfn=g\ncalls=3 0x900 7\n+5 * 30\n+1 * 1\ncfn=g\ncalls=1 +0x800 *\n* * 10\n\
         cfn=h\ncalls=2 0x900 1\n0x200 2 5\n0x200 2 0\nfn=g\n0x900 7 40\n"
    ));
    let main = func(&cg, "???", "main");
    // `+1` is relative to 0x100, not to the call site 0x105.
    assert_eq!(main.self_cost, [(0x100, 2), (0x101, 1)]);
    let g = cg.find("???", "g").unwrap();
    let h = cg.find("???", "h").unwrap();
    assert_eq!(
        main.calls,
        [
            Call { site: 0x101, callee: g, count: 1, inclusive: 10 },
            Call { site: 0x105, callee: g, count: 3, inclusive: 30 },
            Call { site: 0x200, callee: h, count: 2, inclusive: 5 },
        ]
    );
    // h is known only as a callee.
    assert!(cg.functions[h].self_cost.is_empty());
    assert_eq!(cg.self_total(), 43);
    // The target position of `calls=` is the callee's entry, relative positions included.
    assert_eq!((cg.functions[g].entry, cg.functions[h].entry, main.entry), (Some(0x900), Some(0x900), None));
    let into = cg.calls_into();
    assert_eq!((into[g], into[h], into[cg.find("???", "main").unwrap()]), (4, 2, 0));
}

#[test]
fn calls_are_summed_per_site_and_callee() {
    let cg = ok(&format!("{HEAD}fn=m\ncfn=g\ncalls=3 0x9 1\n0x5 1 30\ncfn=g\ncalls=2 0x9 1\n0x5 1 20\n"));
    let g = cg.find("???", "g").unwrap();
    assert_eq!(func(&cg, "???", "m").calls, [Call { site: 5, callee: g, count: 5, inclusive: 50 }]);
}

#[test]
fn callee_object_is_cob_for_one_call_and_the_current_object_otherwise() {
    let cg = ok(&format!(
        "{HEAD}ob=(1) /bin/app\nfn=(1) main\n0x10 0 1\ncob=(2) /lib/libc.so\ncfn=(2) malloc\ncalls=1 0x500 0\n\
         0x11 0 9\ncfn=(3) helper\ncalls=1 0x30 0\n0x12 0 4\nob=(2)\nfn=(2)\n0x500 0 9\nob=(1)\nfn=(3)\n0x30 0 4\n"
    ));
    let main = func(&cg, "/bin/app", "main");
    let callees: Vec<(&str, &str)> = main
        .calls
        .iter()
        .map(|c| (cg.functions[c.callee].object.as_str(), cg.functions[c.callee].name.as_str()))
        .collect();
    assert_eq!(callees, [("/lib/libc.so", "malloc"), ("/bin/app", "helper")]);
    assert_eq!(func(&cg, "/lib/libc.so", "malloc").self_cost, [(0x500, 9)]);
    assert_eq!(func(&cg, "/bin/app", "helper").self_cost, [(0x30, 4)]);
    assert_eq!(cg.functions.len(), 3);
}

#[test]
fn parts_are_summed_into_the_same_functions() {
    let part = |n: u64| {
        format!(
            "part: {n}\npositions: instr line\nevents: Ir\nsummary: {n}0\nob=/a\nfn=f\n0x10 0 {n}0\ntotals: {n}0\n"
        )
    };
    let cg = ok(&format!("# callgrind format\nversion: 1\n{}{}", part(1), part(2)));
    assert_eq!(func(&cg, "/a", "f").self_cost, [(0x10, 30)]);
    assert_eq!(cg.totals, Some(30));
    assert!(!cg.truncated);
}

#[test]
fn concatenated_files_keep_their_name_tables_apart() {
    let file = |name: &str| format!("{HEAD}fn=(1) {name}\n0x10 0 1\nfn=(1)\n0x11 0 1\ntotals: 2\n");
    let cg = ok(&format!("{}{}", file("first"), file("second")));
    assert_eq!(func(&cg, "???", "first").self_cost, [(0x10, 1), (0x11, 1)]);
    assert_eq!(func(&cg, "???", "second").self_cost, [(0x10, 1), (0x11, 1)]);
    assert_eq!(cg.totals, Some(4));
    // A reference to an id only the previous file defined is an error.
    let e = err(&format!("{}{HEAD}fn=(1)\n", file("first")));
    assert_eq!((e.line, e.kind), (14, ParseErrorKind::UndefinedId { spec: "fn".into(), id: 1 }));
}

#[test]
fn parts_must_count_the_same_first_event() {
    let e = err(&format!("{HEAD}fn=f\n0x1 0 1\nevents: Dr Ir\n"));
    assert_eq!(e.line, 7);
    assert_eq!(e.kind, ParseErrorKind::EventsDiffer { first: "Ir".into(), found: "Dr".into() });
}

#[test]
fn jump_lines_and_their_source_lines_add_nothing() {
    let cg = ok(&format!(
        "{HEAD}fn=f\n0x10 3 1\njump=4 +8 *\n+2 *\njcnd=1/4 0x30 9\n* *\n+1 * 2\njfi=(3) x.c\njump=1 0x40 1\n\
         0x40 1 5\n"
    ));
    // The source lines move nothing: +1 is relative to 0x10. A jump followed by a cost line
    // (older writers) keeps that line's cost.
    assert_eq!(func(&cg, "???", "f").self_cost, [(0x10, 1), (0x11, 2), (0x40, 5)]);
}

#[test]
fn several_events_use_the_first_and_missing_costs_are_zero() {
    let cg =
        ok("positions: instr\nevents: Ir Dr Dw\nfn=f\n0x10 5 6 7\n0x11\n0x12 0 3\n0x13 2\ntotals: 7 9 7\n");
    assert_eq!(cg.events, ["Ir", "Dr", "Dw"]);
    assert_eq!(func(&cg, "???", "f").self_cost, [(0x10, 5), (0x13, 2)]);
    assert_eq!(cg.totals, Some(7));
}

#[test]
fn totals_fall_back_to_summary() {
    let cg = ok(&format!("{HEAD}summary: 12\nfn=f\n0x10 0 12\n"));
    assert_eq!(cg.totals, Some(12));
    let cg = ok(&format!("{HEAD}fn=f\n0x10 0 12\n"));
    assert_eq!(cg.totals, None);
    assert!(!cg.truncated, "totals: is optional");
}

#[test]
fn a_file_cut_in_its_last_line_keeps_the_complete_lines() {
    let cg = ok(&format!("{HEAD}summary: 20\nfn=f\n0x10 0 5\n0x11 0 7"));
    assert!(cg.truncated);
    assert_eq!(func(&cg, "???", "f").self_cost, [(0x10, 5)]);
    // Cut between lines: no closing totals after a summary.
    assert!(ok(&format!("{HEAD}summary: 20\nfn=f\n0x10 0 5\n")).truncated);
    // Cut after a calls= line.
    let cg = ok(&format!("{HEAD}fn=f\n0x10 0 5\ncfn=g\ncalls=1 0x20 0\n"));
    assert!(cg.truncated);
    assert!(func(&cg, "???", "f").calls.is_empty());
    // Cut before anything usable.
    let e = err(&format!("{HEAD}fn=f"));
    assert_eq!((e.line, e.kind), (5, ParseErrorKind::Truncated));
    assert_eq!(err("events: I").kind, ParseErrorKind::Truncated);
}

#[test]
fn the_real_profile_cut_anywhere_parses_or_fails_cleanly() {
    // Every cut point of the header and the first lines, then a stride through the rest.
    let cuts = (0..1024).chain((1024..ALLOC_SPLIT.len()).step_by(101));
    for cut in cuts {
        match parse(&ALLOC_SPLIT[..cut]) {
            Ok(cg) => {
                // Only a cut between `events:` and `summary:` leaves a valid, empty profile.
                assert!(cg.truncated || cg.functions.is_empty(), "cut at {cut}");
                check_exact(&cg, &synthesize(&cg, &SynthOptions::default()));
            }
            Err(e) => assert!(
                matches!(
                    e.kind,
                    ParseErrorKind::Empty | ParseErrorKind::Truncated | ParseErrorKind::NoEvents
                ),
                "cut at {cut}: {e}"
            ),
        }
    }
}

#[test]
fn corrupt_lines_are_errors_with_their_line_number() {
    let cases: &[(&str, usize, ParseErrorKind)] = &[
        ("fn=f\n0x10 0 1\nhello world\n", 7, ParseErrorKind::Unrecognized("hello world".into())),
        ("fn=f\n0x10 0 1x\n", 6, ParseErrorKind::InvalidNumber("1x".into())),
        ("fn=f\n0x10 0 1\n+ 0 1\n", 7, ParseErrorKind::InvalidNumber("+".into())),
        ("fn=f\n**1 0 1\n", 6, ParseErrorKind::InvalidNumber("**1".into())),
        ("fn=f\n0x10\n", 6, ParseErrorKind::MissingPositions { expected: 2, found: 1 }),
        ("0x10 0 1\n", 5, ParseErrorKind::CostBeforeFunction),
        ("ob=/a\nfn=f\nob=/b\n0x10 0 1\n", 8, ParseErrorKind::CostWithoutFunction),
        ("fn=(3\n", 5, ParseErrorKind::InvalidName("(3".into())),
        ("fn=f\ncfn=(9)\n", 6, ParseErrorKind::UndefinedId { spec: "cfn".into(), id: 9 }),
        ("fl=(2)\n", 5, ParseErrorKind::UndefinedId { spec: "fl".into(), id: 2 }),
        ("fn=f\ncalls=1 0x10 0\n", 6, ParseErrorKind::CallWithoutCallee),
        ("fn=f\ncfn=g\ncalls=x 0x10 0\n", 7, ParseErrorKind::InvalidNumber("x".into())),
        ("fn=f\ncfn=g\ncalls=1 0x10\n", 7, ParseErrorKind::InvalidCall),
        ("fn=f\ncfn=g\ncalls=1 0x10 0\n# comment\n\nfn=h\n", 10, ParseErrorKind::MissingCallCost),
        ("= 1\n", 5, ParseErrorKind::Unrecognized("= 1".into())),
        ("positions: instr pc\n", 5, ParseErrorKind::UnknownPosition("pc".into())),
        ("events:\n", 5, ParseErrorKind::NoEventNames),
    ];
    for (body, line, kind) in cases {
        let e = err(&format!("{HEAD}{body}"));
        assert_eq!((e.line, &e.kind), (*line, kind), "{body}");
    }
    assert_eq!(err(&format!("{HEAD}0x10 0 1\n")).to_string(), "line 5: cost line before any `fn=`");
}

#[test]
fn numbers_beyond_64_bits_are_errors() {
    let max = u64::MAX;
    let cases: &[(String, ParseErrorKind)] = &[
        (
            "fn=f\n0x10000000000000000 0 1\n".into(),
            ParseErrorKind::NumberTooLarge("0x10000000000000000".into()),
        ),
        (
            "fn=f\n0x10 0 18446744073709551616\n".into(),
            ParseErrorKind::NumberTooLarge("18446744073709551616".into()),
        ),
        (
            "fn=(99999999999999999999) f\n".into(),
            ParseErrorKind::NumberTooLarge("99999999999999999999".into()),
        ),
        ("fn=f\n0x10 0 1\n-0x11 0 1\n".into(), ParseErrorKind::PositionOutOfRange("-0x11".into())),
        (format!("fn=f\n{max} 0 1\n+1 0 1\n"), ParseErrorKind::PositionOutOfRange("+1".into())),
        (format!("fn=f\n0x10 0 {max}\n* 0 1\n"), ParseErrorKind::CostOverflow),
    ];
    for (body, kind) in cases {
        assert_eq!(&err(&format!("{HEAD}{body}")).kind, kind, "{body}");
    }
    // Summed over the file rather than on consecutive lines: no line to blame.
    let e = err(&format!("{HEAD}fn=f\n0x10 0 {max}\n0x11 0 1\n0x10 0 1\n"));
    assert_eq!((e.line, e.kind), (0, ParseErrorKind::CostOverflow));
    // An id far beyond the ids used costs no memory.
    let cg =
        ok(&format!("{HEAD}fn=(18446744073709551615) f\n0x10 0 1\nfn=(18446744073709551615)\n0x11 0 1\n"));
    assert_eq!(func(&cg, "???", "f").self_cost, [(0x10, 1), (0x11, 1)]);
}

#[test]
fn files_without_events_or_addresses_are_errors() {
    assert_eq!(err("").kind, ParseErrorKind::Empty);
    assert_eq!(err("\n  \n").to_string(), "the callgrind file is empty");
    assert_eq!(err("# callgrind format\nversion: 1\ncmd: x\n").kind, ParseErrorKind::NoEvents);
    assert_eq!(err("positions: instr\nfn=f\n0x10 1\n").kind, ParseErrorKind::CostBeforeEvents);
    let e = err("positions: line\nevents: Ir\n");
    assert_eq!(e.line, 1);
    assert!(e.to_string().contains("--dump-instr=yes"), "{e}");
    // Without `positions:`, positions are line numbers.
    let e = err("events: Ir\nfn=f\n15 90\n");
    assert_eq!((e.line, e.kind), (3, ParseErrorKind::NoInstructionAddresses { positions: "line".into() }));
    // A header alone is a valid, empty profile.
    assert!(ok(HEAD).functions.is_empty());
}

#[test]
fn windows_line_ends_and_unknown_lines_are_accepted() {
    let cg = ok("positions: instr line\r\nevents: Ir\r\nfrobnicate: 1\r\ntimeframe (BB): 12\r\nfn=f\r\n\
                 rec=2\r\n0x10 0 3\r\ntotals: 3\r\n  ");
    assert_eq!(func(&cg, "???", "f").self_cost, [(0x10, 3)]);
    assert_eq!(cg.totals, Some(3));
    assert!(!cg.truncated, "a last line of blanks is no cut line");
}

// Synthesis.

/// A call graph by names: `(name, self costs, calls as (site, callee, inclusive))`.
type Spec<'a> = &'a [(&'a str, &'a [(u64, u64)], &'a [(u64, &'a str, u64)])];

fn graph(spec: Spec) -> Callgrind {
    let index: HashMap<&str, usize> = spec.iter().enumerate().map(|(i, s)| (s.0, i)).collect();
    let functions = spec
        .iter()
        .map(|&(name, self_cost, calls)| Function {
            name: name.into(),
            object: "/bin/app".into(),
            self_cost: self_cost.to_vec(),
            calls: calls
                .iter()
                .map(|&(site, callee, inclusive)| Call { site, callee: index[callee], count: 1, inclusive })
                .collect(),
            entry: None,
        })
        .collect();
    Callgrind { events: vec!["Ir".into()], totals: None, functions, truncated: false }
}

/// The guarantees that hold whatever the graph and options.
fn check_exact(cg: &Callgrind, syn: &Synthesized) {
    let mut by_leaf: HashMap<(usize, u64), u64> = HashMap::new();
    let mut seen = HashSet::new();
    let mut detached = 0;
    for s in &syn.stacks {
        assert!(s.value > 0, "{s:?}");
        assert_eq!(s.frames.len(), s.functions.len(), "{s:?}");
        assert!(seen.insert((&s.frames, &s.functions, s.detached)), "duplicate {s:?}");
        let unique: HashSet<_> = s.functions.iter().collect();
        assert_eq!(unique.len(), s.functions.len(), "a function twice on {s:?}");
        if s.detached {
            assert_eq!(s.frames.len(), 1);
            detached += s.value;
        }
        // Each call site is a call of the caller to the callee.
        for i in 1..s.frames.len() {
            let (caller, callee) = (s.functions[i], s.functions[i - 1]);
            assert!(
                cg.functions[caller].calls.iter().any(|c| c.site == s.frames[i] && c.callee == callee),
                "{s:?}"
            );
        }
        *by_leaf.entry((s.functions[0], s.frames[0])).or_default() += s.value;
    }
    let mut expected = HashMap::new();
    for (f, func) in cg.functions.iter().enumerate() {
        for &(a, c) in &func.self_cost {
            if c > 0 {
                expected.insert((f, a), c);
            }
        }
    }
    assert_eq!(by_leaf, expected);
    assert_eq!(syn.detached_cost, detached);
    assert_eq!(u128::from(syn.total), cg.self_total());
}

/// Sum of the stacks that pass through function `name`.
fn through(cg: &Callgrind, syn: &Synthesized, name: &str) -> u64 {
    let f = cg.functions.iter().position(|f| f.name == name).unwrap();
    syn.stacks.iter().filter(|s| s.functions.contains(&f)).map(|s| s.value).sum()
}

fn diamond() -> Callgrind {
    graph(&[
        ("main", &[(0x100, 10)], &[(0x104, "a", 30), (0x108, "b", 60)]),
        ("a", &[(0x200, 10)], &[(0x204, "c", 20)]),
        ("b", &[(0x300, 40)], &[(0x304, "c", 20)]),
        ("c", &[(0x400, 24), (0x410, 16)], &[]),
    ])
}

#[test]
fn a_shared_callee_is_split_between_its_callers() {
    let cg = diamond();
    let syn = synthesize(&cg, &SynthOptions::default());
    check_exact(&cg, &syn);
    assert_eq!(syn.detached_cost, 0);
    assert_eq!(syn.total, 100);
    for (name, total) in [("main", 100), ("a", 30), ("b", 60), ("c", 40)] {
        assert_eq!(through(&cg, &syn, name), total, "{name}");
    }
    let value = |frames: &[u64]| syn.stacks.iter().find(|s| s.frames == frames).map(|s| s.value);
    assert_eq!(value(&[0x400, 0x204, 0x104]), Some(12));
    assert_eq!(value(&[0x410, 0x204, 0x104]), Some(8));
    assert_eq!(value(&[0x400, 0x304, 0x108]), Some(12));
    assert_eq!(value(&[0x410, 0x304, 0x108]), Some(8));
    assert_eq!(value(&[0x100]), Some(10));
    assert_eq!(syn.stacks[0].functions, [0], "depth first from the root");
    assert_eq!(syn, synthesize(&cg, &SynthOptions::default()));
}

#[test]
fn direct_recursion_keeps_totals_exact() {
    let cg = graph(&[
        ("main", &[(0x100, 10)], &[(0x104, "f", 100)]),
        ("f", &[(0x200, 70), (0x208, 30)], &[(0x20c, "f", 60)]),
    ]);
    let syn = synthesize(&cg, &SynthOptions::default());
    check_exact(&cg, &syn);
    assert_eq!(syn.detached_cost, 0);
    assert_eq!(through(&cg, &syn, "main"), 110);
    assert_eq!(through(&cg, &syn, "f"), 100);
}

#[test]
fn an_indirect_cycle_terminates_and_keeps_self_costs_exact() {
    // main → A → B → A, as callgrind sums it: A's self is outer 20 + inner 10.
    let cg = graph(&[
        ("main", &[(0x100, 5)], &[(0x104, "A", 70)]),
        ("A", &[(0x200, 30)], &[(0x204, "B", 50)]),
        ("B", &[(0x300, 40)], &[(0x304, "A", 10)]),
    ]);
    let syn = synthesize(&cg, &SynthOptions::default());
    check_exact(&cg, &syn);
    // A gets 70·30/80 on the path, B 43.75·40/50; the rest has no path.
    assert_eq!(syn.detached_cost, 9);
    assert_eq!(through(&cg, &syn, "main"), 75 - 9);
}

#[test]
fn budgets_push_the_rest_into_detached_stacks() {
    let cg = diamond();
    let options = [
        SynthOptions { min_flow: Some(1e12), ..SynthOptions::default() },
        SynthOptions { max_depth: 2, ..SynthOptions::default() },
        SynthOptions { max_depth: 0, ..SynthOptions::default() },
        SynthOptions { max_stacks: 1, ..SynthOptions::default() },
        SynthOptions { max_stacks: 0, ..SynthOptions::default() },
        SynthOptions { min_flow: Some(f64::NAN), ..SynthOptions::default() },
    ];
    for o in options {
        let syn = synthesize(&cg, &o);
        check_exact(&cg, &syn);
        assert!(syn.detached_cost > 0, "{o:?}");
    }
    let syn = synthesize(&cg, &SynthOptions { max_depth: 2, ..SynthOptions::default() });
    assert_eq!(syn.detached_cost, 40, "c is at depth 3");
    assert!(syn.stacks.iter().all(|s| s.frames.len() <= 2));
}

#[test]
fn a_cycle_nobody_calls_starts_where_its_cost_exceeds_its_calls_in() {
    // x: I' 7, called for 3; y: I' 7, called for 4. Both start stacks, the cycle cut where it
    // closes leaves a little without a path.
    let cg = graph(&[("x", &[(0x1, 3)], &[(0x2, "y", 4)]), ("y", &[(0x10, 4)], &[(0x11, "x", 3)])]);
    let syn = synthesize(&cg, &SynthOptions::default());
    check_exact(&cg, &syn);
    assert_eq!(syn.detached_cost, 2);
    assert!(syn.stacks.iter().any(|s| !s.detached && s.frames == [0x10, 0x2]), "y under x");
    // Excesses below the flow threshold start nothing: no root reaches the cycle.
    let syn = synthesize(&cg, &SynthOptions { min_flow: Some(100.0), ..SynthOptions::default() });
    check_exact(&cg, &syn);
    assert_eq!(syn.detached_cost, 7);
}

#[test]
fn a_thread_start_function_starts_its_own_stacks() {
    // Callgrind charges the call that creates a thread with the parent's cost only: the
    // thread's work is in start_thread's own costs, beyond what the call into it carries.
    let cg = graph(&[
        ("main", &[(0x100, 10)], &[(0x104, "spawn", 5)]),
        ("spawn", &[(0x200, 3)], &[(0x204, "start_thread", 2)]),
        ("start_thread", &[(0x300, 60), (0x310, 40)], &[]),
    ]);
    let syn = synthesize(&cg, &SynthOptions::default());
    check_exact(&cg, &syn);
    assert_eq!(syn.detached_cost, 0);
    assert_eq!(through(&cg, &syn, "main"), 15);
    assert_eq!(through(&cg, &syn, "start_thread"), 100);
    let value = |frames: &[u64]| syn.stacks.iter().find(|s| s.frames == frames).map(|s| s.value);
    assert_eq!(value(&[0x300]), Some(59));
    assert_eq!(value(&[0x310]), Some(39));
    // The largest root comes first.
    assert_eq!(syn.stacks[0].frames, [0x300]);
}

#[test]
fn inconsistent_inclusive_costs_are_scaled_to_the_self_costs() {
    // Both callers claim more for c than c costs in total.
    let cg = graph(&[
        ("main", &[], &[(0x1, "a", 100), (0x2, "b", 100)]),
        ("a", &[], &[(0x10, "c", 100)]),
        ("b", &[], &[(0x20, "c", 100)]),
        ("c", &[(0x30, 41)], &[(0x31, "gone", 5)]),
        ("gone", &[], &[]),
    ]);
    let syn = synthesize(&cg, &SynthOptions::default());
    check_exact(&cg, &syn);
    assert_eq!(syn.detached_cost, 0);
    assert_eq!(syn.stacks.iter().map(|s| s.value).collect::<Vec<_>>(), [21, 20]);
}

#[test]
fn edges_to_missing_functions_are_ignored() {
    let mut cg = diamond();
    cg.functions[0].calls.push(Call { site: 0x10c, callee: 99, count: 1, inclusive: 5 });
    check_exact(&cg, &synthesize(&cg, &SynthOptions::default()));
}

#[test]
fn apportion_sums_to_the_target_with_largest_remainders() {
    assert_eq!(apportion(&[12.5, 12.5], 25), [13, 12]);
    assert_eq!(apportion(&[1.0, 2.0, 1.0], 10), [3, 5, 2]);
    assert_eq!(apportion(&[0.2, 0.3, 0.5], 1), [0, 0, 1]);
    assert_eq!(apportion(&[30.0, 30.0], 40), [20, 20]);
    assert_eq!(apportion(&[0.0, 0.0], 7), [0, 7]);
    assert_eq!(apportion(&[f64::NAN, -1.0, 2.0], 3), [0, 0, 3]);
    assert_eq!(apportion(&[5.0], 9), [9]);
    assert!(apportion(&[], 9).is_empty());
    let huge = apportion(&[1e30, 3e30, 1.0], u64::MAX);
    assert_eq!(huge.iter().map(|&v| u128::from(v)).sum::<u128>(), u128::from(u64::MAX));
    let mut seed = 7u64;
    for _ in 0..200 {
        let weights: Vec<f64> = (0..7)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 40) as f64 / 1000.0
            })
            .collect();
        let target = seed >> 50;
        assert_eq!(apportion(&weights, target).iter().sum::<u64>(), target, "{weights:?} {target}");
    }
}

#[test]
fn call_counts_follow_the_paths_and_sum_exactly_per_call() {
    // main calls g 3 times and h once; h calls g twice; g calls itself once. By inclusive cost,
    // g's paths are main->g (30 of 50) and main->h->g (20 of 50).
    let cg = ok(&format!(
        "{HEAD}fn=main\n0x10 1 10\ncfn=g\ncalls=3 0x100 1\n0x11 1 30\ncfn=h\ncalls=1 0x200 1\n0x12 1 25\n\
         fn=h\n0x200 1 5\ncfn=g\ncalls=2 0x100 1\n0x201 1 20\n\
         fn=g\n0x100 1 50\ncfn=g\ncalls=1 0x100 1\n0x101 1 10\n"
    ));
    let syn = synthesize(&cg, &SynthOptions::default());
    let (main, g, h) =
        (cg.find("???", "main").unwrap(), cg.find("???", "g").unwrap(), cg.find("???", "h").unwrap());
    let calls =
        |frames: &[u64]| syn.calls.iter().filter(|s| s.frames == frames).map(|s| s.value).sum::<u64>();
    assert_eq!(calls(&[0x100, 0x11]), 3, "main->g");
    assert_eq!(calls(&[0x200, 0x12]), 1, "main->h");
    assert_eq!(calls(&[0x100, 0x201, 0x12]), 2, "main->h->g");
    // The recursive call, split over g's two paths by their flow (3/5 and 2/5 of 1, rounded).
    let recursive = calls(&[0x100, 0x101, 0x11]) + calls(&[0x100, 0x101, 0x201, 0x12]);
    assert_eq!(recursive, 1);
    let into = cg.calls_into();
    for f in [main, g, h] {
        let total: u64 = syn.calls.iter().filter(|s| s.functions[0] == f).map(|s| s.value).sum();
        assert_eq!(total, into[f], "{}", cg.functions[f].name);
    }
    assert!(syn.calls.iter().all(|s| !s.detached));
    assert!(syn.calls.iter().all(|s| s.frames.len() == s.functions.len()));
    // Unexpanded paths keep their counts, detached at the callee's entry.
    let syn = synthesize(&cg, &SynthOptions { max_depth: 0, ..SynthOptions::default() });
    assert_eq!(syn.calls.iter().filter(|s| s.detached).map(|s| s.value).sum::<u64>(), 7);
    assert!(syn.calls.iter().all(|s| s.detached && s.frames.len() == 1));
}
