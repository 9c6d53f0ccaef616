//! Seeded random choices of the scenarios: a small PRNG, a Zipf sampler
//! (SKU popularity) and weighted picks.
//!
//! Written here rather than taken from `rand_distr`: the sequence for a seed
//! then depends on this file only (not on a crate's version), the sampler is
//! exact (an inverted CDF table, binary search: about 20 comparisons for a
//! million ranks) and the bench crate needs no new dependency.

/// xorshift64* (Vigna): fast, good enough for picking requests; not for
/// anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// An independent stream for `stream` (e.g. a connection) of `seed`:
    /// the same pair always gives the same sequence.
    pub(crate) fn for_stream(seed: u64, stream: u64) -> Self {
        Self::new(splitmix64(seed ^ splitmix64(stream.wrapping_add(1))))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    pub(crate) fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        // Multiply-shift: no modulo bias worth counting for small n.
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// SplitMix64's finaliser: spreads nearby seeds far apart.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Zipf's law over ranks `0..n`: `P(k) = (k + 1)^-s / H(n, s)`, where
/// `H(n, s) = sum over j in 1..=n of j^-s`. `s = 0` is uniform; `s = 1`
/// with 1 000 ranks gives the first one 13 % of the draws and the first 10
/// 39 %.
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    /// `cdf[k] = P(rank <= k)`; the last is exactly 1.
    cdf: Box<[f64]>,
}

impl Zipf {
    /// `n >= 1` ranks, exponent `s >= 0`.
    pub(crate) fn new(n: usize, s: f64) -> Result<Self, String> {
        if n == 0 {
            return Err("a Zipf distribution needs at least one rank".into());
        }
        if !(s.is_finite() && s >= 0.0) {
            return Err(format!("Zipf exponent {s}: must be a number >= 0"));
        }
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += (k as f64).powf(-s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        cdf[n - 1] = 1.0;
        Ok(Self {
            cdf: cdf.into_boxed_slice(),
        })
    }

    #[cfg(test)]
    pub(crate) fn ranks(&self) -> usize {
        self.cdf.len()
    }

    /// The probability of rank `k`.
    #[cfg(test)]
    pub(crate) fn pmf(&self, k: usize) -> f64 {
        match k {
            0 => self.cdf[0],
            k if k < self.cdf.len() => self.cdf[k] - self.cdf[k - 1],
            _ => 0.0,
        }
    }

    /// A rank in `0..n`.
    pub(crate) fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        // The first rank whose cumulative probability reaches u (u in (0, 1]).
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// A pick among a few choices in proportion to their weights.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Weighted {
    /// Cumulative shares; the last is exactly 1.
    cum: Vec<f64>,
}

impl Weighted {
    /// Weights `>= 0`, not all zero.
    pub(crate) fn new(weights: &[f64]) -> Result<Self, String> {
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(format!("weights {weights:?}: each must be a number >= 0"));
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err("the weights add up to 0".into());
        }
        let mut acc = 0.0;
        let mut cum: Vec<f64> = weights
            .iter()
            .map(|w| {
                acc += w;
                acc / total
            })
            .collect();
        // The last choice with a weight takes the rounding remainder.
        if let Some(last) = weights.iter().rposition(|w| *w > 0.0) {
            for c in &mut cum[last..] {
                *c = 1.0;
            }
        }
        Ok(Self { cum })
    }

    /// The index of a choice (never one whose weight is 0).
    pub(crate) fn pick(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cum.partition_point(|&c| c < u).min(self.cum.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(z: &Zipf, draws: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let mut counts = vec![0u64; z.ranks()];
        for _ in 0..draws {
            counts[z.sample(&mut rng)] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn zipf_probabilities() {
        // s = 1 over 1 000 ranks: P(first) = 1 / H(1000) = 0.13359...
        let z = Zipf::new(1000, 1.0).unwrap();
        assert!((z.pmf(0) - 0.133_59).abs() < 1e-4, "{}", z.pmf(0));
        assert!((z.pmf(1) * 2.0 - z.pmf(0)).abs() < 1e-12);
        let sum: f64 = (0..1000).map(|k| z.pmf(k)).sum();
        assert!((sum - 1.0).abs() < 1e-9);
        assert_eq!(z.pmf(1000), 0.0);
        // s = 0 is uniform.
        let u = Zipf::new(4, 0.0).unwrap();
        for k in 0..4 {
            assert!((u.pmf(k) - 0.25).abs() < 1e-12);
        }
    }

    #[test]
    fn zipf_samples_follow_the_law() {
        for s in [0.0, 0.8, 1.0, 1.5] {
            let z = Zipf::new(20, s).unwrap();
            let f = frequencies(&z, 400_000, 42);
            for (k, got) in f.iter().enumerate() {
                let want = z.pmf(k);
                // 400 000 draws: a standard deviation of at most 0.0008.
                assert!(
                    (got - want).abs() < 0.004,
                    "s {s} rank {k}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn zipf_edges_and_errors() {
        let one = Zipf::new(1, 1.2).unwrap();
        let mut rng = Rng::new(3);
        assert!((0..1000).all(|_| one.sample(&mut rng) == 0));
        let z = Zipf::new(5, 2.0).unwrap();
        assert!((0..10_000).all(|_| z.sample(&mut rng) < 5));
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(10, -0.5).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
    }

    #[test]
    fn seeded_streams_repeat_and_differ() {
        let z = Zipf::new(1000, 1.1).unwrap();
        let draw = |seed, stream| {
            let mut rng = Rng::for_stream(seed, stream);
            (0..64).map(|_| z.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 3), draw(7, 3));
        assert_ne!(draw(7, 3), draw(7, 4));
        assert_ne!(draw(7, 3), draw(8, 3));
    }

    #[test]
    fn weighted_picks() {
        let w = Weighted::new(&[80.0, 0.0, 15.0, 5.0]).unwrap();
        let mut rng = Rng::new(11);
        let mut counts = [0u64; 4];
        for _ in 0..200_000 {
            counts[w.pick(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0, "a zero weight is never picked");
        let share = |i: usize| counts[i] as f64 / 200_000.0;
        assert!((share(0) - 0.80).abs() < 0.01, "{counts:?}");
        assert!((share(2) - 0.15).abs() < 0.01, "{counts:?}");
        assert!((share(3) - 0.05).abs() < 0.01, "{counts:?}");
        assert!(Weighted::new(&[0.0, 0.0]).is_err());
        assert!(Weighted::new(&[1.0, -1.0]).is_err());
        assert!(Weighted::new(&[f64::INFINITY]).is_err());
        let only = Weighted::new(&[0.0, 3.0, 0.0]).unwrap();
        assert!((0..1000).all(|_| only.pick(&mut rng) == 1));
    }

    #[test]
    fn below_is_in_range() {
        let mut rng = Rng::new(5);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[rng.below(7)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
