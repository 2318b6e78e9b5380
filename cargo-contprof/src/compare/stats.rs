//! Statistical building blocks: Student's t distribution, a two-sample t-test on logs with a
//! known noise floor, and Benjamini–Hochberg false discovery rate control.
//!
//! Written by hand (about a hundred lines) rather than pulling a statistics crate: all that is
//! needed is the regularized incomplete beta function, and its continued fraction is standard.

/// Natural log of the gamma function (Lanczos approximation, g = 7, about 15 digits for x > 0).
fn ln_gamma(x: f64) -> f64 {
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

/// The t value with two-sided tail probability `p` (0 < p < 1): the `1 - p/2` quantile.
pub(crate) fn t_quantile_two_sided(p: f64, df: f64) -> f64 {
    // Solve I_x(df/2, 1/2) = p for x by bisection; t = sqrt(df (1 - x) / x).
    let (a, b) = (df / 2.0, 0.5);
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..64 {
        let mid = 0.5 * (lo + hi);
        if inc_beta(a, b, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-13 * hi {
            break;
        }
    }
    let x = 0.5 * (lo + hi);
    (df * (1.0 - x) / x).sqrt()
}

/// Summary of one side of a test: values already on the log scale.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SideStats {
    pub n: usize,
    pub mean: f64,
    /// Variance of one observation, after the noise floor.
    pub var: f64,
}

impl SideStats {
    /// Mean and variance of `ys`, the variance raised to at least `floor` (the sampling noise
    /// that any run must have, known from the sample count, so that a few runs that happen to
    /// agree cannot make the test overconfident).
    pub(crate) fn new(ys: &[f64], floor: f64) -> SideStats {
        let n = ys.len();
        let mean = ys.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 { ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        SideStats { n, mean, var: var.max(floor) }
    }
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

/// Welch's unequal-variance t-test with the Welch–Satterthwaite degrees of freedom. Both sides
/// need at least two runs.
pub(crate) fn welch(base: SideStats, head: SideStats) -> TestResult {
    let (vb, vh) = (base.var / base.n as f64, head.var / head.n as f64);
    let se2 = vb + vh;
    let diff = head.mean - base.mean;
    let df_den = vb * vb / (base.n as f64 - 1.0) + vh * vh / (head.n as f64 - 1.0);
    let df = if df_den > 0.0 { se2 * se2 / df_den } else { (base.n + head.n - 2) as f64 };
    finish(diff, se2.sqrt(), df)
}

/// A test when one side has a single run: its variance is taken from the other side (equal
/// variances assumed), with the other side's degrees of freedom. With one run on both sides,
/// `assumed_var` stands in and `df` is infinite-like (large), so the result is only indicative.
pub(crate) fn single_run(base: SideStats, head: SideStats, assumed_var: f64) -> TestResult {
    let diff = head.mean - base.mean;
    let (var, df) = match (base.n > 1, head.n > 1) {
        (true, _) => (base.var.max(head.var), (base.n - 1) as f64),
        (_, true) => (head.var.max(base.var), (head.n - 1) as f64),
        _ => (base.var.max(head.var).max(assumed_var), 1e6),
    };
    let se = (var / base.n as f64 + var / head.n as f64).sqrt();
    finish(diff, se, df)
}

fn finish(diff: f64, se: f64, df: f64) -> TestResult {
    let p = if se > 0.0 { t_two_sided_p(diff / se, df) } else if diff == 0.0 { 1.0 } else { 0.0 };
    TestResult { diff, se, df, p }
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
    fn welch_textbook_example() {
        // Expected t and df computed independently (Python statistics module).
        let a = [19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0];
        let b = [28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7, 23.2, 17.5, 20.6, 18.0, 23.9];
        let r = welch(SideStats::new(&a, 0.0), SideStats::new(&b, 0.0));
        assert!(close(r.diff / r.se, 2.222_183, 1e-6), "t = {}", r.diff / r.se);
        assert!(close(r.df, 17.355_31, 1e-6), "df = {}", r.df);
    }
}
