# The injected regressions of tests/measure/real_crates.sh and tests/measure/interleaved_real.sh,
# sourced by both: per crate/scenario, the function the regression is injected into (a regex on the
# tool's function names), what was designed, and the call paths (regexes: the injected function,
# its callers up to main, its callees) outside of which a listed regression counts as "another
# function".
#
# The functions were found from a base profile (`contprof run --runs 3 --frequency 999`, self CPU).
# The sizes are as designed; what the tool measured (its
# `change` of the function's CPU, self and total) is printed in the table. In the PAIRS=2
# validation (load ~3.5 on 2 cores): format_escaped_str_contents self +19..33%, create_node self
# +27..38%, sha_round self +34..48%, digest_blocks self +43%, escape_html_scalar self +63..78%
# (total +39%), zmij::write self +76..100% (total +32..41%): the redo adds a call's fixed cost
# to short calls.
# METRICS: a regex of the metrics in which the injected change counts as named (default: cpu).
declare -A INJECTED PATHS EXPECTED METRICS
INJECTED[serde_json/reg_own]='serde_json::ser::format_escaped_str_contents'
EXPECTED[serde_json/reg_own]='+25% of its self work (its body redone into io::sink() on every 4th call); it holds ~5% of self CPU (1 thread)'
PATHS[serde_json/reg_own]='format_escaped_str_contents|format_escaped_str\b|serialize_str|write_string_fragment|write_char_escape|Serialize for serde_json::value::Value>::serialize|Serialize for alloc::string::String|SerializeMap|SerializeSeq|serialize_entry|serialize_key|serialize_value|serialize_element|MapKeySerializer|ser::to_string|ser::to_vec|ser::to_writer|to_string_pretty|to_vec_pretty|contprof_workload::main|collect_seq|Serialize for &T>::serialize|Serialize for alloc::vec::Vec<T>>::serialize|<contprof_workload::'
INJECTED[serde_json/reg_dep]='zmij::write'
EXPECTED[serde_json/reg_dep]='+25% of its work (redone into a scratch buffer on every 4th call); no dependency function holds 5%: zmij::write is the largest, ~1.9% of CPU with its callees, ~0.4% self'
PATHS[serde_json/reg_dep]='zmij::|Number as serde_core::ser::Serialize|serialize_f64|write_f64|format_finite|Serialize for serde_json::value::Value>::serialize|SerializeMap|SerializeSeq|serialize_entry|serialize_value|serialize_element|ser::to_string|ser::to_vec|ser::to_writer|to_string_pretty|to_vec_pretty|contprof_workload::main|collect_seq|Serialize for &T>::serialize|Serialize for alloc::vec::Vec<T>>::serialize|<contprof_workload::'
INJECTED[pulldown-cmark/reg_own]='pulldown_cmark::tree::Tree<T>::create_node'
EXPECTED[pulldown-cmark/reg_own]='+25% of its self time (an arithmetic loop of CREATE_NODE_SPIN=8 steps on every 4th call (measured +27..38% at the defaults of check; 6 gave +12..21%)); it holds ~7% of self CPU'
PATHS[pulldown-cmark/reg_own]='Tree<T>::create_node|Tree<T>::append|Tree<T>::append_text|FirstPass|firstpass::|parse::Parser<F>::handle_inline|handle_inline_pass1|handle_emphasis|make_code_span|InlineStack|Parser<F>::new|new_ext|new_with_broken_link_callback|Parser<F> as core::iter::traits::iterator::Iterator>::next|HtmlWriter|html::push_html|contprof_workload::main'
INJECTED[pulldown-cmark/reg_dep]='pulldown_cmark_escape::escape_html_scalar'
EXPECTED[pulldown-cmark/reg_dep]='+25% of its self work (its body redone into a discarding writer on every 4th call); it holds ~5% of self CPU'
PATHS[pulldown-cmark/reg_dep]='pulldown_cmark_escape::|write_str|HtmlWriter|html::push_html|contprof_workload::main'
# sha_round is inlined into the rounds_* functions and the added instructions carry their
# callers' line info, so the tool charges the extra work to the rounds_* function holding it.
INJECTED[sha2/reg_own]='sha2::sha512::x86_avx2::(sha_round|rounds_)'
EXPECTED[sha2/reg_own]='about +25% of its work (two rotates and a xor of the state per round, black_boxed, on every call); it holds ~20% of self CPU (the SHA-512 thread)'
PATHS[sha2/reg_own]='sha2::sha512::|compress512|Sha512VarCore|digest_blocks|digest_pad|block_buffer::|digest::|contprof_workload::work|std::thread|contprof_workload::main'
INJECTED[sha2/reg_dep]='block_buffer::BlockBuffer<BS,K>::digest_blocks'
EXPECTED[sha2/reg_dep]='about +25% of its self work (on calls whose input length is 3 mod 4, about a quarter: the body redone on a clone with a no-op compression); it holds ~17% of self CPU (both threads)'
PATHS[sha2/reg_dep]='block_buffer::|digest::|Sha256VarCore|Sha512VarCore|update_blocks|compress256|compress512|sha2::sha256::|sha2::sha512::|contprof_workload::work|std::thread|contprof_workload::main'

# The rendezvous channel's lock is taken by every send and recv of the four threads. A sleep
# while holding it makes the others wait longer for it (delay of their lock waits, charged to send
# and recv, whose std frames fold into them) and the sender's own wall time in send grow.
INJECTED[crossbeam-channel/reg_own]='crossbeam_channel::flavors::zero::Channel<T>::(send|recv)'
EXPECTED[crossbeam-channel/reg_own]='every HOLD_SLEEP_EVERY=16th send sleeps 20 µs (~70 µs with timer slack) holding the zero-capacity channel mutex: longer lock waits (delay) in send and recv, wall time in send'
METRICS[crossbeam-channel/reg_own]='^(delay|contentions|wall)$'
PATHS[crossbeam-channel/reg_own]='crossbeam_channel::|crossbeam_utils::|std::sync::|std::sys::|std::thread|contprof_workload::rendezvous|contprof_workload::main|syscall|clock_nanosleep'
INJECTED[crossbeam-channel/reg_dep]='crossbeam_utils::backoff::Backoff::snooze'
EXPECTED[crossbeam-channel/reg_dep]='2^step spin-loop hints (64-1024) ahead of every sched_yield of Backoff::snooze (a CPU regression of a dependency; snooze holds ~25% of self CPU, sched_yield folded in)'
METRICS[crossbeam-channel/reg_dep]='^cpu$'
PATHS[crossbeam-channel/reg_dep]='crossbeam_utils::|crossbeam_channel::|std::thread|contprof_workload::rendezvous|contprof_workload::pipeline|contprof_workload::main|sched_yield'
