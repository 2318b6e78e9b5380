//! Statistical building blocks: Student's t distribution, a two-sample t-test on logs with a
//! known noise floor, and Benjamini–Hochberg false discovery rate control.
//!
//! Written by hand (about a hundred lines) rather than pulling a statistics crate: all that is
//! needed is the regularized incomplete beta function, and its continued fraction is standard.

/// Natural log of the gamma function (Lanczos approximation, g = 7, about 15 digits for x > 0).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).abs().ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction for the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// Regularized incomplete beta function I_x(a, b).
pub(crate) fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Two-sided p value of a t statistic with `df` degrees of freedom: P(|T| ≥ |t|).
pub(crate) fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return if t.is_nan() { 1.0 } else { 0.0 };
    }
    inc_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// Density of Student's t distribution.
fn t_pdf(t: f64, df: f64) -> f64 {
    let ln_norm = ln_gamma((df + 1.0) / 2.0) - ln_gamma(df / 2.0) - 0.5 * (df * std::f64::consts::PI).ln();
    (ln_norm - (df + 1.0) / 2.0 * (1.0 + t * t / df).ln()).exp()
}

/// The t value with two-sided tail probability `p` (0 < p < 1): the `1 - p/2` quantile.
///
/// Newton's method on the tail probability, kept inside a bracket that bisection shrinks when a
/// step leaves it: a handful of evaluations instead of the ~50 of plain bisection.
pub(crate) fn t_quantile_two_sided(p: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while t_two_sided_p(hi, df) > p && hi < 1e12 {
        lo = hi;
        hi *= 4.0;
    }
    let mut t = 0.5 * (lo + hi);
    for _ in 0..100 {
        let g = t_two_sided_p(t, df) - p;
        if g > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let slope = -2.0 * t_pdf(t, df);
        let next = t - g / slope;
        let next = if next.is_finite() && next > lo && next < hi { next } else { 0.5 * (lo + hi) };
        if (next - t).abs() <= 1e-12 * t.abs().max(1.0) {
            return next;
        }
        t = next;
    }
    t
}

/// Digamma function ψ(x) for x > 0 (recurrence, then the asymptotic series).
fn digamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 6.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let x2 = 1.0 / (x * x);
    acc + x.ln() - 0.5 / x - x2 * (1.0 / 12.0 - x2 * (1.0 / 120.0 - x2 / 252.0))
}

/// Trigamma function ψ'(x) for x > 0.
fn trigamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 6.0 {
        acc += 1.0 / (x * x);
        x += 1.0;
    }
    let x2 = 1.0 / (x * x);
    acc + 1.0 / x + x2 / 2.0 + x2 / x * (1.0 / 6.0 - x2 * (1.0 / 30.0 - x2 / 42.0))
}

/// How many of `n` values [`SideStats::trimmed`] cuts at each end at `trim`: 0 when fewer than
/// [`MIN_TRIMMED_KEPT`] would stay.
pub(crate) fn trimmed_per_end(n: usize, trim: f64) -> usize {
    let g = (trim * n as f64).floor() as usize;
    if n >= 2 * g + MIN_TRIMMED_KEPT { g } else { 0 }
}

/// Fewest values a trimmed side keeps: cutting one run of five leaves three and two degrees of
/// freedom, which costs more power than the one run could. At 20% this trims from 8 runs on.
const MIN_TRIMMED_KEPT: usize = 6;

/// Summary of one side of a test: values already on the log scale.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SideStats {
    pub n: usize,
    pub mean: f64,
    /// Variance of one observation as measured (before any floor or prior).
    pub raw_var: f64,
    /// Variance of one observation used by the test.
    pub var: f64,
    /// Degrees of freedom of `var`.
    pub df: f64,
    /// The sampling-noise floor of the variance.
    pub floor: f64,
}

impl SideStats {
    /// Mean and variance of `ys`, the variance raised to at least `floor` (the sampling noise
    /// that any run must have, known from the sample count, so that a few runs that happen to
    /// agree cannot make the test overconfident).
    pub(crate) fn new(ys: &[f64], floor: f64) -> SideStats {
        let n = ys.len();
        let mean = ys.iter().sum::<f64>() / n.max(1) as f64;
        let var =
            if n > 1 { ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        SideStats { n, mean, raw_var: var, var: var.max(floor), df: n.saturating_sub(1) as f64, floor }
    }

    /// Yuen's trimmed statistics of `ys`: the mean of the middle values, `trim` of them cut at
    /// each end, and the winsorized variance scaled so that `var / n` is Yuen's squared standard
    /// error, with `h - 1` degrees of freedom (`h` values kept): [`welch`] on two of them is
    /// Yuen's test. For costs whose runs have heavy tails (a lock's waits when the scheduler
    /// interleaved threads unusually in one run), where one low run would otherwise dominate the
    /// variance of the logs. When fewer than [`MIN_TRIMMED_KEPT`] values would stay nothing is
    /// cut: [`SideStats::new`].
    pub(crate) fn trimmed(ys: &[f64], floor: f64, trim: f64) -> SideStats {
        let n = ys.len();
        let g = trimmed_per_end(n, trim);
        if g == 0 {
            return SideStats::new(ys, floor);
        }
        let mut sorted = ys.to_vec();
        sorted.sort_by(f64::total_cmp);
        let h = n - 2 * g;
        let mean = sorted[g..n - g].iter().sum::<f64>() / h as f64;
        let (lo, hi) = (sorted[g], sorted[n - g - 1]);
        let winsorized: Vec<f64> = sorted.iter().map(|y| y.clamp(lo, hi)).collect();
        let wmean = winsorized.iter().sum::<f64>() / n as f64;
        let wvar = winsorized.iter().map(|y| (y - wmean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let var = wvar * ((n * (n - 1)) as f64 / (h * (h - 1)) as f64);
        SideStats { n, mean, raw_var: wvar, var: var.max(floor), df: (h - 1) as f64, floor }
    }

    /// Empirical-Bayes moderation: the measured variance is averaged with the prior `τ² + floor`
    /// (jitter common to the group's functions plus this function's own sampling noise), weighted
    /// by degrees of freedom, as limma does for gene expression. The degrees of freedom add up.
    pub(crate) fn moderated(self, prior: Prior) -> SideStats {
        if self.n < 2 || prior.d0 <= 0.0 {
            return self;
        }
        let v0 = prior.tau2 + self.floor;
        let var = (prior.d0 * v0 + self.df * self.raw_var) / (prior.d0 + self.df);
        SideStats { var: var.max(self.floor), df: self.df + prior.d0, ..self }
    }
}

/// The prior of the per-run variance of a group's functions: `tau2 + sampling floor`, worth `d0`
/// degrees of freedom.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Prior {
    pub tau2: f64,
    pub d0: f64,
}

/// Largest prior weight: beyond this the moderated t is a normal test anyway, and a cap keeps a
/// few functions with their own spread from being drowned out entirely.
const MAX_PRIOR_DF: f64 = 50.0;

/// Fits the prior from `(raw variance, sampling floor, degrees of freedom)` of many functions.
///
/// `tau2` solves median(s² / (τ² + floor)) = median of χ²_d/d (robust to a few functions with
/// a spread of their own); `d0` comes from the excess spread of ln s² over what χ²_d alone gives
/// (Smyth 2004). `None` with fewer than three usable items.
pub(crate) fn fit_prior(items: &[(f64, f64, f64)]) -> Option<Prior> {
    let items: Vec<(f64, f64, f64)> =
        items.iter().copied().filter(|(s2, _, d)| *s2 > 0.0 && *d >= 1.0).collect();
    if items.len() < 3 {
        return None;
    }
    let median = |mut v: Vec<f64>| median(&mut v).unwrap_or(0.0);
    let d_typ = median(items.iter().map(|i| i.2).collect());
    // Median of χ²_d / d (Wilson–Hilferty).
    let chi_median = (1.0 - 2.0 / (9.0 * d_typ)).powi(3);
    let ratio_median = |tau2: f64| median(items.iter().map(|(s2, f, _)| s2 / (tau2 + f)).collect());
    let tau2 = if ratio_median(0.0) <= chi_median {
        0.0
    } else {
        let (mut lo, mut hi) = (0.0, items.iter().map(|i| i.0).fold(0.0, f64::max));
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if ratio_median(mid) > chi_median {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    };
    let e: Vec<f64> =
        items.iter().map(|(s2, f, d)| (s2 / (tau2 + f)).ln() - digamma(d / 2.0) + (d / 2.0).ln()).collect();
    let mean_e = e.iter().sum::<f64>() / e.len() as f64;
    let var_e = e.iter().map(|x| (x - mean_e).powi(2)).sum::<f64>() / (e.len() - 1) as f64;
    let excess = var_e - items.iter().map(|(_, _, d)| trigamma(d / 2.0)).sum::<f64>() / items.len() as f64;
    let d0 = if excess <= trigamma(MAX_PRIOR_DF / 2.0) {
        MAX_PRIOR_DF
    } else {
        // Solve trigamma(d0/2) = excess (trigamma is decreasing).
        let (mut lo, mut hi) = (1e-6_f64, MAX_PRIOR_DF / 2.0);
        for _ in 0..100 {
            let mid = (lo * hi).sqrt();
            if trigamma(mid) > excess {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        2.0 * (lo * hi).sqrt()
    };
    Some(Prior { tau2, d0 })
}

/// The outcome of a two-sample test on logs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TestResult {
    /// Difference of means on the log scale (head - base).
    pub diff: f64,
    /// Standard error of `diff`.
    pub se: f64,
    /// Degrees of freedom of the t distribution used.
    pub df: f64,
    /// Two-sided p value.
    pub p: f64,
}

impl TestResult {
    /// Confidence interval of `diff` at `level` (e.g. 0.95).
    pub(crate) fn interval(&self, level: f64) -> (f64, f64) {
        if self.se == 0.0 {
            return (self.diff, self.diff);
        }
        let t = t_quantile_two_sided(1.0 - level, self.df);
        (self.diff - t * self.se, self.diff + t * self.se)
    }
}

impl TestResult {
    /// The same test of `diff - shift`, where `shift` was estimated with variance `shift_var`
    /// (the side-level normalization).
    pub(crate) fn shifted(self, shift: f64, shift_var: f64) -> TestResult {
        finish(self.diff - shift, (self.se * self.se + shift_var).sqrt(), self.df)
    }
}

/// Weighted median of `(value, weight)` pairs and its approximate variance `π/2 / Σw` when the
/// weights are inverse variances (the efficiency of the median of normal data). `None` if empty.
pub(crate) fn weighted_median(items: &mut [(f64, f64)]) -> Option<(f64, f64)> {
    items.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    if items.is_empty() || total.is_nan() || total <= 0.0 {
        return None;
    }
    let mut acc = 0.0;
    for (i, (v, w)) in items.iter().enumerate() {
        acc += w;
        if acc >= total / 2.0 {
            // Exactly half: average with the next value, as an unweighted median would.
            let v = match items.get(i + 1) {
                Some((next, _)) if (acc - total / 2.0).abs() <= 1e-12 * total => (v + next) / 2.0,
                _ => *v,
            };
            return Some((v, std::f64::consts::FRAC_PI_2 / total));
        }
    }
    items.last().map(|(v, _)| (*v, std::f64::consts::FRAC_PI_2 / total))
}

/// The median of `values` (the mean of the middle two for an even count), reordering them;
/// `None` when there are none.
pub fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[m]),
        _ => Some(0.5 * (values[m - 1] + values[m])),
    }
}

/// The two-sided p value of Yuen's trimmed test (a fifth cut at each end, `SideStats::trimmed`)
/// that the middles of `a` and `b` differ; `None` with fewer than two values a side. For series
/// outside a comparison, such as a function's share of each window of a version, whose values
/// can have heavy tails (a window that caught a rare request).
pub fn two_sample_p(a: &[f64], b: &[f64]) -> Option<f64> {
    (a.len() >= 2 && b.len() >= 2)
        .then(|| welch(SideStats::trimmed(a, 0.0, 0.2), SideStats::trimmed(b, 0.0, 0.2)).p)
}

/// Welch's unequal-variance t-test with the Welch–Satterthwaite degrees of freedom. Both sides
/// need at least two runs.
pub(crate) fn welch(base: SideStats, head: SideStats) -> TestResult {
    let (vb, vh) = (base.var / base.n as f64, head.var / head.n as f64);
    let se2 = vb + vh;
    let diff = head.mean - base.mean;
    let df_den = vb * vb / base.df + vh * vh / head.df;
    let df = if df_den > 0.0 { se2 * se2 / df_den } else { base.df + head.df };
    finish(diff, se2.sqrt(), df)
}

/// A test when one side has a single run: its variance is taken from the other side (equal
/// variances assumed), with the other side's degrees of freedom. With one run on both sides,
/// `assumed_var` stands in and `df` is infinite-like (large), so the result is only indicative.
pub(crate) fn single_run(base: SideStats, head: SideStats, assumed_var: f64) -> TestResult {
    let diff = head.mean - base.mean;
    let (var, df) = match (base.n > 1, head.n > 1) {
        (true, _) => (base.var.max(head.var), base.df),
        (_, true) => (head.var.max(base.var), head.df),
        _ => (base.var.max(head.var).max(assumed_var), 1e6),
    };
    let se = (var / base.n as f64 + var / head.n as f64).sqrt();
    finish(diff, se, df)
}

fn finish(diff: f64, se: f64, df: f64) -> TestResult {
    let p = if se > 0.0 {
        t_two_sided_p(diff / se, df)
    } else if diff == 0.0 {
        1.0
    } else {
        0.0
    };
    TestResult { diff, se, df, p }
}

/// Fewest items from which a spread common to them is estimated.
pub(crate) const MIN_NULL_ITEMS: usize = 8;

/// The spread between two batches that their within-batch variances do not show: drift between
/// batches recorded at different times, code layout. Given `(change, variance)` of the tests of
/// functions that were not found changed (most of a comparison's functions: an empirical null),
/// the variance τ² to add to every one, by a moment estimator of random-effects meta-analysis
/// (DerSimonian–Laird, with Q set to its upper quartile rather than its mean, see below):
/// τ² = max(0, (Q − q₇₅) / (Σw − Σw²/Σw)) with w = 1/variance and Q the weighted squared
/// deviations from the weighted mean. `None` with fewer than [`MIN_NULL_ITEMS`] items.
///
/// Real changes would inflate it, so they are left out first, one at a time: the item with the
/// largest studentized deleted residual (its distance from the others' weighted mean, in units of
/// its own spread under the others' estimate) while that is beyond 3.5, up to a third of them.
pub(crate) fn excess_variance(items: &[(f64, f64)]) -> Option<f64> {
    let mut kept: Vec<(f64, f64)> =
        items.iter().copied().filter(|(d, v)| d.is_finite() && v.is_finite() && *v > 0.0).collect();
    let first = dersimonian_laird(&kept)?;
    let most_removed = kept.len() / 3;
    for _ in 0..most_removed {
        let mut worst: Option<(usize, f64)> = None;
        for i in 0..kept.len() {
            let others: Vec<(f64, f64)> =
                kept.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, x)| *x).collect();
            let Some(tau2) = dersimonian_laird(&others) else { return Some(first) };
            let w: Vec<f64> = others.iter().map(|(_, v)| 1.0 / (v + tau2)).collect();
            let sw: f64 = w.iter().sum();
            let mean = others.iter().zip(&w).map(|((d, _), w)| w * d).sum::<f64>() / sw;
            let (d, v) = kept[i];
            let z = (d - mean).abs() / (v + tau2 + 1.0 / sw).sqrt();
            if worst.is_none_or(|(_, zw)| z > zw) {
                worst = Some((i, z));
            }
        }
        match worst {
            Some((i, z)) if z > 3.5 => {
                kept.remove(i);
            }
            _ => break,
        }
    }
    dersimonian_laird(&kept).or(Some(first))
}

fn dersimonian_laird(items: &[(f64, f64)]) -> Option<f64> {
    if items.len() < MIN_NULL_ITEMS {
        return None;
    }
    let w: Vec<f64> = items.iter().map(|(_, v)| 1.0 / v).collect();
    let sw: f64 = w.iter().sum();
    let sw2: f64 = w.iter().map(|w| w * w).sum();
    let mean = items.iter().zip(&w).map(|((d, _), w)| w * d).sum::<f64>() / sw;
    let q: f64 = items.iter().zip(&w).map(|((d, _), w)| w * (d - mean).powi(2)).sum();
    // DerSimonian–Laird sets Q to its expectation k − 1. With a dozen functions Q alone varies
    // by ±√(2(k−1)), and on identical batches the estimate would then often add as much as a
    // typical function's own noise, costing the large functions their power. Setting Q to its
    // upper quartile instead adds spread only when the data show clearly more than noise.
    let k = items.len() as f64;
    let q75 = (k - 1.0) + 0.674_5 * (2.0 * (k - 1.0)).sqrt();
    Some(((q - q75) / (sw - sw2 / sw)).max(0.0))
}

/// The value a standard normal variable exceeds with probability `p` (0 < p < 1), from the t
/// distribution with many degrees of freedom.
pub(crate) fn normal_quantile_upper(p: f64) -> f64 {
    if p < 0.5 {
        t_quantile_two_sided(2.0 * p, 1e7)
    } else if p > 0.5 {
        -t_quantile_two_sided(2.0 * (1.0 - p), 1e7)
    } else {
        0.0
    }
}

/// Benjamini–Hochberg adjusted p values (q values), in the order of `ps`.
pub(crate) fn benjamini_hochberg(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]).then(a.cmp(&b)));
    let mut q = vec![1.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(ps[i] * m as f64 / (rank + 1) as f64);
        q[i] = running.min(1.0);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn t_distribution_matches_tables() {
        // Two-sided 5% critical values.
        assert!(close(t_quantile_two_sided(0.05, 1.0), 12.706_204_736, 1e-8));
        assert!(close(t_quantile_two_sided(0.05, 10.0), 2.228_138_852, 1e-8));
        assert!(close(t_quantile_two_sided(0.01, 4.0), 4.604_094_871, 1e-8));
        assert!(close(t_quantile_two_sided(0.05, 1e6), 1.959_966_3, 1e-6));
        assert!(close(t_two_sided_p(2.228_138_852, 10.0), 0.05, 1e-7));
        assert!(close(t_two_sided_p(3.0, 7.5), 0.018_390_9, 1e-5));
        assert_eq!(t_two_sided_p(0.0, 5.0), 1.0);
        assert!(t_two_sided_p(40.0, 8.0) < 1e-9);
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!(ln_gamma(1.0).abs() < 1e-13);
        assert!(close(ln_gamma(5.0), 24.0_f64.ln(), 1e-12));
        assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-12));
    }

    #[test]
    fn bh_matches_hand_computation() {
        // Sorted: 0.01 -> 0.04, 0.03 -> 0.06, 0.04 -> 0.0533, 0.5 -> 0.5; then running minimum from the top.
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5]);
        let want = [0.04, 0.04 * 4.0 / 3.0, 0.04 * 4.0 / 3.0, 0.5];
        for (q, want) in q.iter().zip(want) {
            assert!(close(*q, want, 1e-12), "{q} != {want}");
        }
    }

    #[test]
    fn polygamma_known_values() {
        assert!(close(digamma(1.0), -0.577_215_664_901_532_9, 1e-7));
        assert!(close(trigamma(1.0), std::f64::consts::PI.powi(2) / 6.0, 1e-7));
        assert!(close(trigamma(0.5), std::f64::consts::PI.powi(2) / 2.0, 1e-7));
    }

    #[test]
    fn prior_fit_recovers_common_jitter() {
        // s² exactly at their expectation: τ² = 0.01 over floors 0.001..0.03, 9 degrees of freedom.
        let items: Vec<(f64, f64, f64)> =
            (1..=30).map(|i| (0.01 + 0.001 * i as f64, 0.001 * i as f64, 9.0)).collect();
        let prior = fit_prior(&items);
        // The median of χ²_9/9 is below 1, so τ² comes out a little above 0.01; no excess spread.
        assert!(prior.is_some_and(|p| p.tau2 > 0.01 && p.tau2 < 0.015 && p.d0 == MAX_PRIOR_DF), "{prior:?}");
        assert_eq!(fit_prior(&items[..2]), None);
    }

    #[test]
    fn trimmed_statistics_are_yuens_and_resist_a_low_run() {
        // One run of ten far below the others: its log pulls the plain mean and variance, not the
        // trimmed ones.
        let mut ys: Vec<f64> = (0..9).map(|i| 6.5 + 0.05 * f64::from(i)).collect();
        ys.push(4.0);
        let plain = SideStats::new(&ys, 0.0);
        let t = SideStats::trimmed(&ys, 0.0, 0.2);
        assert_eq!((t.n, t.df), (10, 5.0));
        // Trimmed mean of the middle six sorted values: 6.55..6.8.
        assert!((t.mean - 6.675).abs() < 1e-9, "{t:?}");
        // Winsorized at 6.55 and 6.80: variance of [6.55 x3, 6.6, 6.65, 6.7, 6.75, 6.8 x3].
        let w = [6.55, 6.55, 6.55, 6.6, 6.65, 6.7, 6.75, 6.8, 6.8, 6.8];
        let wm = w.iter().sum::<f64>() / 10.0;
        let wvar = w.iter().map(|y| (y - wm).powi(2)).sum::<f64>() / 9.0;
        assert!((t.raw_var - wvar).abs() < 1e-12);
        assert!((t.var - wvar * 90.0 / 30.0).abs() < 1e-12);
        assert!(t.var < plain.var / 5.0, "{t:?} vs {plain:?}");
        // Too few values for six to stay after the cut: the plain statistics.
        let few = SideStats::trimmed(&ys[..7], 0.0, 0.2);
        let untrimmed = SideStats::new(&ys[..7], 0.0);
        assert_eq!((few.mean, few.var, few.df), (untrimmed.mean, untrimmed.var, 6.0));
        assert_eq!(SideStats::trimmed(&ys[..8], 0.0, 0.2).df, 5.0);
    }

    #[test]
    fn weighted_median_follows_the_weight() {
        let mut items = [(3.0, 1.0), (-1.0, 1.0), (0.5, 5.0)];
        assert_eq!(weighted_median(&mut items).map(|m| m.0), Some(0.5));
        let mut items = [(1.0, 1.0), (2.0, 1.0)];
        assert_eq!(weighted_median(&mut items).map(|m| m.0), Some(1.5));
        assert!(weighted_median(&mut []).is_none());
    }

    #[test]
    fn excess_variance_recovers_a_spread_the_variances_do_not_show() {
        // Changes spread as N(0, 0.01 + 0.04): the variances claim 0.01, the excess is 0.04.
        // Deterministic normal quantiles stand in for draws.
        let n = 401;
        let items: Vec<(f64, f64)> = (1..=n)
            .map(|i| {
                let z = normal_quantile_upper(i as f64 / (n + 1) as f64);
                (z * 0.05f64.sqrt(), 0.01)
            })
            .collect();
        let tau2 = excess_variance(&items).unwrap();
        assert!((tau2 - 0.04).abs() < 0.005, "{tau2}");
        // Spread as claimed: nothing to add; too few items: no estimate.
        let tight: Vec<(f64, f64)> = items.iter().map(|(d, _)| (*d, 0.05)).collect();
        assert!(excess_variance(&tight).unwrap() < 0.003);
        assert_eq!(excess_variance(&items[..5]), None);
        assert!((normal_quantile_upper(0.025) - 1.959_964).abs() < 1e-4);
    }

    #[test]
    fn welch_textbook_example() {
        // Expected t and df computed independently (Python statistics module).
        let a = [19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0];
        let b = [28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7, 23.2, 17.5, 20.6, 18.0, 23.9];
        let r = welch(SideStats::new(&a, 0.0), SideStats::new(&b, 0.0));
        assert!(close(r.diff / r.se, 2.222_183, 1e-6), "t = {}", r.diff / r.se);
        assert!(close(r.df, 17.355_31, 1e-6), "df = {}", r.df);
    }
}
