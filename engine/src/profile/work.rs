//! The work a program counted while it was profiled (`contprof::labels::count_work`: requests
//! served, messages handled), per label set: what a production comparison divides a window's
//! costs by to compare them per unit of work (`prod compare --denominator work`).
//!
//! A profile carries it in its comments, one per label set that counted any:
//! `work counted: 120 {"endpoint":"/search"}` (the units, then the set's pairs as a JSON object,
//! `{}` for work counted without labels). pprof has no field for a count that is not a sample's
//! value, and a sample would put a stack of its own into every view of the profile; a comment is
//! shown by `go tool pprof -comments` and left alone by tools that do not know it. (Not a
//! `contprof.KEY=VALUE` comment: those are a production window's own labels.)

use std::collections::BTreeMap;

use super::{Profile, labels_match};

/// The start of a work comment.
pub const PREFIX: &str = "work counted: ";

/// The comment of `units` counted under the label set `pairs`.
pub fn comment(units: u64, pairs: &[(String, String)]) -> String {
    let set: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    format!("{PREFIX}{units} {}", serde_json::to_string(&set).unwrap_or_else(|_| "{}".into()))
}

/// The units and label set of a work comment; `None` for any other comment.
pub fn parse(comment: &str) -> Option<(u64, BTreeMap<String, String>)> {
    let (units, set) = comment.strip_prefix(PREFIX)?.split_once(' ')?;
    Some((units.parse().ok()?, serde_json::from_str(set).ok()?))
}

/// Adds up work comments by label set (a raw file's records, profiles merged): the comments that
/// are work are replaced by one per set, with the sum of their units (saturating: a stored profile
/// may say anything); the others pass.
pub fn sum_comments<'a>(comments: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut sums: BTreeMap<BTreeMap<String, String>, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for c in comments {
        match parse(c) {
            Some((units, set)) => {
                let sum = sums.entry(set).or_default();
                *sum = sum.saturating_add(units);
            }
            None => out.push(c.to_owned()),
        }
    }
    for (set, units) in sums {
        out.push(comment(units, &set.into_iter().collect::<Vec<_>>()));
    }
    out
}

impl Profile {
    /// The units of work the program counted while this profile was recorded, summed over its
    /// label sets; `None` when it counted none (no work comment).
    pub fn work(&self) -> Option<f64> {
        let mut any = false;
        let sum = self.comments().into_iter().filter_map(parse).fold(0u64, |a, (units, _)| {
            any = true;
            a.saturating_add(units)
        });
        any.then_some(sum as f64)
    }

    /// Keeps the work counted under label sets that pass `filters` (as
    /// [`Profile::retain_labelled`] keeps samples): the work of the samples kept.
    pub(super) fn retain_work(&mut self, filters: &[(String, String)]) {
        let strings = &self.string_table;
        self.comment.retain(|&i| {
            let text = usize::try_from(i).ok().and_then(|i| strings.get(i)).map_or("", String::as_str);
            parse(text).is_none_or(|(_, set)| labels_match(filters, |k| set.get(k).map(String::as_str)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_comment_reads_back_and_other_comments_are_not_work() {
        let c = comment(120, &[("endpoint".into(), "/search \"q\"".into()), ("a".into(), "1".into())]);
        assert_eq!(c, r#"work counted: 120 {"a":"1","endpoint":"/search \"q\""}"#);
        let (units, set) = parse(&c).unwrap();
        assert_eq!(units, 120);
        assert_eq!(set["endpoint"], "/search \"q\"");
        assert_eq!(parse(&comment(3, &[])), Some((3, BTreeMap::new())));
        assert_eq!(parse("contprof.work=5 {}"), None);
        assert_eq!(parse("clock: setitimer"), None);
    }

    #[test]
    fn work_is_summed_per_set_and_filtered_like_the_samples() {
        let search = [("endpoint".to_owned(), "/search".to_owned())];
        let items = [("endpoint".to_owned(), "/items".to_owned())];
        let merged = sum_comments(
            [comment(5, &search), "note".into(), comment(2, &items), comment(7, &search), comment(1, &[])]
                .iter()
                .map(String::as_str),
        );
        assert_eq!(merged[0], "note");
        assert!(merged.contains(&comment(12, &search)), "{merged:?}");
        let mut p = Profile::default();
        assert_eq!(p.work(), None, "no work comment: nothing counted");
        p.add_comments(&merged);
        assert_eq!(p.work(), Some(15.0));
        p.retain_work(&[("endpoint".into(), "/search".into())]);
        assert_eq!(p.work(), Some(12.0));
        assert_eq!(p.comments()[0], "note");
    }
}
