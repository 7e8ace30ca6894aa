//! The planning simulation of issue 20 (a bench binary, not CI): 100,000 mailboxes with
//! heavy-tailed sizes (seeded) planned onto 10, 50 and 200 shards by the function
//! `migratectl batch plan` uses ([`migrated_core::shard::balance`]), and, for comparison, by
//! the stable hash a daemon uses without a plan. Prints, per distribution and shard count,
//! the makespan (the fullest shard's bytes) against the ideal (total bytes / shards).
//!
//! `cargo run --release -p migrated-tests --bin plan_bench [-- --seed N --mailboxes N]`

use std::time::Instant;

use migrated_core::shard::{Weight, balance, shard_of};
use testbed::SplitMix64;

/// Mailbox sizes the way hosters report them: most of a few hundred MB, a long tail of
/// mailboxes of tens of GB (Exchange Online caps one at 100 GB).
enum Distribution {
    /// Lognormal, median `median` bytes, shape `sigma`, capped.
    LogNormal { median: f64, sigma: f64 },
    /// Pareto with minimum `min` bytes and index `alpha` (the smaller, the heavier), capped.
    Pareto { min: f64, alpha: f64 },
}

const CAP: f64 = 100e9;

impl Distribution {
    fn name(&self) -> String {
        match self {
            Self::LogNormal { median, sigma } => {
                format!("lognormal median {:.0} MB sigma {sigma}", median / 1e6)
            }
            Self::Pareto { min, alpha } => format!("Pareto min {:.0} MB alpha {alpha}", min / 1e6),
        }
    }

    fn sample(&self, rng: &mut SplitMix64) -> u64 {
        let uniform = |rng: &mut SplitMix64| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let x = match self {
            Self::LogNormal { median, sigma } => {
                // Box-Muller.
                let (u1, u2) = (uniform(rng).max(f64::MIN_POSITIVE), uniform(rng));
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                median * (sigma * z).exp()
            }
            Self::Pareto { min, alpha } => {
                min / (1.0 - uniform(rng))
                    .max(f64::MIN_POSITIVE)
                    .powf(1.0 / alpha)
            }
        };
        x.min(CAP) as u64
    }
}

fn main() {
    let mut seed = 20u64;
    let mut mailboxes = 100_000usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match (
            pair[0].as_str(),
            pair.get(1).and_then(|v| v.parse::<u64>().ok()),
        ) {
            ("--seed", Some(v)) => seed = v,
            ("--mailboxes", Some(v)) => mailboxes = v as usize,
            _ => {
                eprintln!("usage: plan_bench [--seed N] [--mailboxes N]");
                std::process::exit(2);
            }
        }
    }
    let distributions = [
        Distribution::LogNormal {
            median: 500e6,
            sigma: 1.5,
        },
        Distribution::Pareto {
            min: 200e6,
            alpha: 1.1,
        },
    ];
    println!("{mailboxes} mailboxes, seed {seed}");
    println!(
        "| distribution | total TB | largest GB | shards | ideal TB/shard | plan: makespan / ideal | hash: makespan / ideal | plan time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut worst: f64 = 1.0;
    for d in &distributions {
        let mut rng = SplitMix64::new(seed);
        let sizes: Vec<Weight> = (0..mailboxes)
            .map(|_| Weight {
                bytes: d.sample(&mut rng),
            })
            .collect();
        let total: u64 = sizes.iter().map(|w| w.bytes).sum();
        let largest = sizes.iter().map(|w| w.bytes).max().unwrap_or(0);
        for shards in [10usize, 50, 200] {
            let t = Instant::now();
            let plan = balance(&sizes, shards);
            let took = t.elapsed();
            let mut hashed = vec![0u64; shards];
            for (i, w) in sizes.iter().enumerate() {
                hashed[shard_of(&format!("user{i}@example.org"), shards)] += w.bytes;
            }
            let ideal = total as f64 / shards as f64;
            let hash_ratio = hashed.iter().copied().max().unwrap_or(0) as f64 / ideal;
            worst = worst.max(plan.over_ideal());
            println!(
                "| {} | {:.1} | {:.1} | {shards} | {:.3} | {:.4} | {:.3} | {:.0} ms |",
                d.name(),
                total as f64 / 1e12,
                largest as f64 / 1e9,
                ideal / 1e12,
                plan.over_ideal(),
                hash_ratio,
                took.as_secs_f64() * 1e3
            );
        }
    }
    println!(
        "worst plan: {:.2} % over the ideal (target: within 10 %)",
        (worst - 1.0) * 100.0
    );
}
