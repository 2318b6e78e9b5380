//! contprof workload for pulldown-cmark: render Markdown to HTML with every extension on (tables,
//! footnotes, strikethrough, task lists, smart punctuation, heading attributes): the crate's own
//! README.md and deterministic generated documents (headings, nested lists, emphasis, links and
//! reference links, inline code, fenced code, block quotes, tables, footnotes, entities), plus a pass
//! over the events with source offsets. Prints a checksum. About 0.45 s of CPU on the development VM.
use pulldown_cmark::{html, Event, Options, Parser};

const README: &str = include_str!("../../README.md");

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const WORDS: &[&str] = &[
    "parser",
    "event",
    "stream",
    "render",
    "html",
    "table",
    "footnote",
    "list",
    "item",
    "block",
    "inline",
    "emphasis",
    "strong",
    "link",
    "image",
    "code",
    "quote",
    "heading",
    "paragraph",
    "text",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "with",
    "café",
    "naïve",
    "über",
];

fn words(rng: &mut Rng, out: &mut String, n: u64) {
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        match rng.below(24) {
            0 => out.push_str(&format!("*{w}*")),
            1 => out.push_str(&format!("**{w}**")),
            2 => out.push_str(&format!("`{w}()`")),
            3 => out.push_str(&format!("[{w}](https://example.org/{w}/{})", rng.below(100))),
            4 => out.push_str(&format!("[{w}][ref{}]", rng.below(8))),
            5 => out.push_str(&format!("~~{w}~~")),
            6 => out.push_str(&format!("\"{w}\" &amp; {w}'s")),
            7 => out.push_str(&format!("{w}[^n{}]", rng.below(4))),
            8 => out.push_str(&format!("<https://example.com/{w}>")),
            _ => out.push_str(w),
        }
    }
}

fn document(rng: &mut Rng) -> String {
    let mut d = String::new();
    for section in 0..6 {
        d.push_str(&format!("## Section {section} {{#s{section}}}\n\n"));
        for _ in 0..1 + rng.below(3) {
            let n = 20 + rng.below(60);
            words(rng, &mut d, n);
            d.push_str("\n\n");
        }
        match rng.below(5) {
            0 => {
                for i in 0..3 + rng.below(5) {
                    d.push_str(if i % 3 == 2 { "    - " } else { "- " });
                    if rng.below(3) == 0 {
                        d.push_str("[x] ");
                    }
                    let n = 4 + rng.below(12);
                    words(rng, &mut d, n);
                    d.push('\n');
                }
            }
            1 => {
                d.push_str("| name | value | note |\n|:-----|------:|:----:|\n");
                for _ in 0..3 + rng.below(6) {
                    d.push_str("| ");
                    words(rng, &mut d, 1);
                    d.push_str(&format!(" | {} | ", rng.below(10_000)));
                    words(rng, &mut d, 3);
                    d.push_str(" |\n");
                }
            }
            2 => {
                d.push_str("```rust\n");
                for i in 0..4 + rng.below(8) {
                    d.push_str(&format!("let x{i} = parse(&input[{i}..]).unwrap(); // <tag> & more\n"));
                }
                d.push_str("```\n");
            }
            3 => {
                for _ in 0..2 + rng.below(3) {
                    d.push_str("> ");
                    let n = 10 + rng.below(20);
                    words(rng, &mut d, n);
                    d.push('\n');
                }
            }
            _ => {
                for i in 1..4 + rng.below(4) {
                    d.push_str(&format!("{i}. "));
                    let n = 6 + rng.below(10);
                    words(rng, &mut d, n);
                    d.push('\n');
                }
            }
        }
        d.push('\n');
    }
    for r in 0..8 {
        d.push_str(&format!("[ref{r}]: https://example.net/ref/{r} \"Reference {r}\"\n"));
    }
    for n in 0..4 {
        d.push_str(&format!("\n[^n{n}]: Footnote {n}: "));
        words(rng, &mut d, 8);
        d.push('\n');
    }
    d
}

fn main() {
    let opts = Options::all();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let docs: Vec<String> = (0..120).map(|_| document(&mut rng)).collect();
    let mut checksum = 0u64;
    let mut out = String::new();
    for round in 0..14 {
        for text in docs.iter().map(String::as_str).chain(std::iter::repeat(README).take(10)) {
            out.clear();
            html::push_html(&mut out, Parser::new_ext(text, opts));
            checksum = checksum.wrapping_mul(131).wrapping_add(out.len() as u64);
            if round == 0 {
                let texts = Parser::new_ext(text, opts)
                    .into_offset_iter()
                    .filter(|(e, _)| matches!(e, Event::Text(_)))
                    .map(|(_, r)| r.len() as u64)
                    .sum::<u64>();
                checksum ^= texts;
            }
        }
    }
    println!("pulldown-cmark workload checksum {checksum:016x}");
}
