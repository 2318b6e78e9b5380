//! contprof workload for serde_json: build order documents as `serde_json::Value`, serialize them
//! (compact and pretty), parse them back (from &str and from bytes), check the round trip, and print
//! a checksum. Deterministic input (xorshift PRNG); about 0.5 s of CPU on the development VM.
use serde_json::{json, Map, Value};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "x-ray",
    "yankee",
    "zulu",
    "Grüße",
    "naïve",
    "café",
    "日本語",
];

fn sentence(rng: &mut Rng, words: u64) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        match rng.below(16) {
            0 => s.push_str(" \"quoted\""),
            1 => s.push_str("\n\tnext line"),
            2 => s.push_str(" back\\slash"),
            _ => {}
        }
    }
    s
}

fn order(rng: &mut Rng, id: u64) -> Value {
    let items: Vec<Value> = (0..1 + rng.below(6))
        .map(|_| {
            json!({
                "sku": format!("SKU-{:06}", rng.below(1_000_000)),
                "qty": rng.below(20) + 1,
                "price": (rng.below(1_000_000) as f64) / 100.0,
                "discount": if rng.below(4) == 0 { json!(rng.below(50) as f64 / 7.0) } else { Value::Null },
            })
        })
        .collect();
    let total: f64 =
        items.iter().map(|i| i["qty"].as_u64().unwrap() as f64 * i["price"].as_f64().unwrap()).sum();
    let mut attrs = Map::new();
    for k in 0..rng.below(5) {
        attrs.insert(format!("attr_{k}_{}", rng.below(100)), json!(rng.next() >> 11));
    }
    let note_words = 10 + rng.below(30);
    json!({
        "id": id,
        "created": 1_700_000_000u64 + rng.below(10_000_000),
        "customer": {
            "name": sentence(rng, 2),
            "email": format!("user{}@example.org", rng.below(100_000)),
            "tags": (0..rng.below(4)).map(|_| WORDS[rng.below(WORDS.len() as u64) as usize]).collect::<Vec<_>>(),
            "score": -(rng.below(1000) as i64) + 500,
        },
        "items": items,
        "total": total,
        "paid": rng.below(2) == 0,
        "note": sentence(rng, note_words),
        "readings": (0..12).map(|_| (rng.below(10_000_000) as f64) / 1000.0 - 5000.0).collect::<Vec<f64>>(),
        "counters": (0..12).map(|k| rng.next() >> (4 * k + 8)).collect::<Vec<u64>>(),
        "attrs": attrs,
    })
}

fn main() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut checksum: u64 = 0;
    for round in 0..7u64 {
        let docs: Vec<Value> = (0..1000).map(|i| order(&mut rng, round * 10_000 + i)).collect();
        let batch = Value::Array(docs);
        let compact = serde_json::to_string(&batch).unwrap();
        let pretty = serde_json::to_string_pretty(&batch).unwrap();
        let back: Value = serde_json::from_str(&compact).unwrap();
        let back2: Value = serde_json::from_slice(pretty.as_bytes()).unwrap();
        assert_eq!(back.as_array().map(Vec::len), back2.as_array().map(Vec::len), "round trip");
        let again = serde_json::to_vec(&back).unwrap();
        checksum = checksum
            .wrapping_mul(31)
            .wrapping_add(compact.len() as u64 + pretty.len() as u64 + again.len() as u64);
        checksum ^= back[7]["id"].as_u64().unwrap_or(0);
    }
    println!("serde_json workload checksum {checksum:016x}");
}
