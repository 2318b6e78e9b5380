//! Reports of a small hand-built profile.

use super::*;
use crate::profile::{
    Function, Label, Line, Location, Profile, SAMPLE_TYPES, Sample, ValueType, sample_index,
};

/// A profile whose samples are `(stack root first, inlined callee of the leaf, cpu ns, alloc bytes)`.
fn profile(samples: &[(&[&str], Option<&str>, i64, i64)]) -> Profile {
    let mut p = Profile { string_table: vec![String::new()], ..Profile::default() };
    let s = |p: &mut Profile, x: &str| match p.string_table.iter().position(|t| t == x) {
        Some(i) => i as i64,
        None => {
            p.string_table.push(x.to_owned());
            p.string_table.len() as i64 - 1
        }
    };
    p.sample_type =
        SAMPLE_TYPES.iter().map(|(t, u)| ValueType { r#type: s(&mut p, t), unit: s(&mut p, u) }).collect();
    let function = |p: &mut Profile, name: &str| {
        let n = s(p, name);
        match p.function.iter().find(|f| f.name == n) {
            Some(f) => f.id,
            None => {
                let id = p.function.len() as u64 + 1;
                p.function.push(Function { id, name: n, system_name: n, filename: 0, start_line: 0 });
                id
            }
        }
    };
    let thread = s(&mut p, "thread");
    for (i, (stack, inlined, cpu, alloc)) in samples.iter().enumerate() {
        let mut ids = Vec::new();
        for (depth, name) in stack.iter().enumerate().rev() {
            let mut line = vec![Line { function_id: function(&mut p, name), line: 1, column: 0 }];
            if depth == stack.len() - 1
                && let Some(inl) = inlined
            {
                line.insert(0, Line { function_id: function(&mut p, inl), line: 2, column: 0 });
            }
            let id = p.location.len() as u64 + 1;
            p.location.push(Location { id, mapping_id: 0, address: 0x1000 + id, line, is_folded: false });
            ids.push(id);
        }
        let mut value = vec![0; SAMPLE_TYPES.len()];
        value[sample_index::SAMPLES] = cpu / 1_000_000;
        value[sample_index::CPU] = *cpu;
        value[sample_index::ALLOC_SPACE] = *alloc;
        let name = s(&mut p, &format!("t{}", i % 2));
        p.sample.push(Sample {
            location_id: ids,
            value,
            label: vec![Label { key: thread, str: name, num: 0, num_unit: 0 }],
        });
    }
    p.duration_nanos = 2_500_000_000;
    p
}

fn sample_profile() -> Profile {
    profile(&[
        (&["main", "parse", "lex"], None, 700_000_000, 0),
        (&["main", "parse"], Some("memchr"), 200_000_000, 4096),
        (&["main", "render"], None, 100_000_000, 1 << 20),
    ])
}

#[test]
fn top_table_sorts_by_self_cpu_with_header() {
    let mut out = Vec::new();
    write_top(
        &mut out,
        &sample_profile(),
        &TopOptions { limit: 3, target: "bench parse".into(), fold_library: false },
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let expected = "\
bench parse: 1.00 s CPU in 1000 samples, 2.50 s wall, 2 threads sampled, 1.0 MiB allocated
  self%  total%   self CPU  self alloc  function
  70.0%   70.0%   700.0 ms           -  lex
  20.0%   20.0%   200.0 ms     4.0 KiB  memchr
  10.0%   10.0%   100.0 ms     1.0 MiB  render
";
    assert_eq!(text, expected);
}

#[test]
fn folded_stacks_are_root_first_with_inlined_frames() {
    let p = sample_profile();
    let cpu = folded_stacks(&p, "cpu").unwrap();
    // `memchr` was inlined into `parse`: its own frame above it. Values in microseconds.
    assert_eq!(cpu, ["main;parse;lex 700000", "main;parse;memchr 200000", "main;render 100000"]);
    let alloc = folded_stacks(&sample_profile(), "alloc_space").unwrap();
    assert_eq!(alloc, ["main;parse;memchr 4096", "main;render 1048576"]);
}

#[test]
fn names_with_semicolons_do_not_split_frames() {
    let p = profile(&[(&["main", "<[u8; 4] as Debug>::fmt"], None, 5000, 0)]);
    assert_eq!(folded_stacks(&p, "cpu").unwrap(), ["main;<[u8, 4] as Debug>::fmt 5"]);
}

#[test]
fn flamegraph_svg_has_title_and_frames() {
    let mut out = Vec::new();
    let opts = FlameGraphOptions { target: "bench parse".into(), ..Default::default() };
    write_flamegraph(&mut out, &sample_profile(), &opts).unwrap();
    let svg = String::from_utf8(out).unwrap();
    assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
    assert!(svg.contains("bench parse: CPU time"));
    assert!(svg.contains("lex (700,000 µs, 70.00%)"), "tooltip of lex");

    let mut out = Vec::new();
    let opts = FlameGraphOptions { sample_type: "alloc_space".into(), target: "t".into() };
    write_flamegraph(&mut out, &sample_profile(), &opts).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("render (1,048,576 bytes"));
}

#[test]
fn flamegraph_errors_name_the_sample_type() {
    let p = profile(&[(&["main"], None, 1000, 0)]);
    let opts = FlameGraphOptions { sample_type: "alloc_space".into(), ..Default::default() };
    assert!(matches!(write_flamegraph(Vec::new(), &p, &opts), Err(ReportError::NoSamples { .. })));
    let opts = FlameGraphOptions { sample_type: "wall".into(), ..Default::default() };
    let err = write_flamegraph(Vec::new(), &p, &opts).unwrap_err();
    assert!(err.to_string().contains("`wall`") && err.to_string().contains("cpu"), "{err}");
}

#[test]
fn units_are_readable() {
    assert_eq!(format_duration(2_000_000_000), "2.00 s");
    assert_eq!(format_duration(1_500_000), "1.5 ms");
    assert_eq!(format_duration(999), "999 ns");
    assert_eq!(format_bytes(512), "512 B");
    assert_eq!(format_bytes(3 << 29), "1.5 GiB");
}
