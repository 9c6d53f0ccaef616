//! `rayltics-bench capacity`: turns measured throughput (`result.json` files
//! written by `run`) and a traffic profile (TOML, see `bench/profiles/`) into
//! a number of cores and nodes, showing every step of the arithmetic.
//!
//! Per scenario:
//! - daily active users = MAU x daily_active_fraction
//! - average req/s = daily active users x sessions/user/day x requests/session / 86 400
//! - peak req/s = average x peak_to_average
//! - per-core capacity = measured req/s / server cores
//! - usable per-core capacity = per-core capacity x target_cpu_utilisation
//! - cores = peak / usable per-core capacity x (1 + headroom)
//!
//! and nodes = ceil(sum of cores / cores_per_node).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

const SECONDS_PER_DAY: f64 = 86_400.0;

/// A traffic profile, as read from TOML.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// Free text, shown in the report.
    #[serde(default)]
    pub(crate) description: Option<String>,
    pub(crate) monthly_active_users: f64,
    /// Share of the monthly active users active on a given day. The default,
    /// 1.0, assumes every monthly user is active every day (the worst case).
    #[serde(default = "one")]
    pub(crate) daily_active_fraction: f64,
    pub(crate) sessions_per_user_per_day: f64,
    /// Busiest second over the average second of the day.
    pub(crate) peak_to_average: f64,
    /// CPU utilisation the fleet should run at, at peak (0 < u <= 1).
    pub(crate) target_cpu_utilisation: f64,
    /// Extra capacity on top, as a fraction (0.3 = 30 % more cores).
    pub(crate) headroom: f64,
    pub(crate) cores_per_node: u32,
    /// Requests per session, by scenario name (the `scenario` of a result).
    pub(crate) requests_per_session: BTreeMap<String, f64>,
}

fn one() -> f64 {
    1.0
}

impl Profile {
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let p: Self = toml::from_str(text)?;
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let finite_nonneg = |name: &str, v: f64| {
            ensure!(
                v.is_finite() && v >= 0.0,
                "{name} must be a finite number >= 0 (is {v})"
            );
            Ok(())
        };
        finite_nonneg("monthly_active_users", self.monthly_active_users)?;
        finite_nonneg("sessions_per_user_per_day", self.sessions_per_user_per_day)?;
        finite_nonneg("headroom", self.headroom)?;
        ensure!(
            self.daily_active_fraction > 0.0 && self.daily_active_fraction <= 1.0,
            "daily_active_fraction must be in (0, 1] (is {})",
            self.daily_active_fraction
        );
        ensure!(
            self.peak_to_average.is_finite() && self.peak_to_average >= 1.0,
            "peak_to_average must be >= 1 (is {})",
            self.peak_to_average
        );
        ensure!(
            self.target_cpu_utilisation > 0.0 && self.target_cpu_utilisation <= 1.0,
            "target_cpu_utilisation must be in (0, 1] (is {})",
            self.target_cpu_utilisation
        );
        ensure!(
            self.cores_per_node >= 1,
            "cores_per_node must be at least 1"
        );
        ensure!(
            !self.requests_per_session.is_empty(),
            "requests_per_session names no scenario"
        );
        for (name, &v) in &self.requests_per_session {
            finite_nonneg(&format!("requests_per_session.{name}"), v)?;
        }
        Ok(())
    }
}

/// What a `result.json` says about one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Measured {
    pub(crate) scenario: String,
    /// Median throughput of the runs against the target.
    pub(crate) throughput_rps: f64,
    pub(crate) server_cores: u32,
    pub(crate) runs: usize,
    pub(crate) source: PathBuf,
}

#[derive(Debug, Deserialize)]
struct ResultsFile {
    schema_version: u32,
    config: ResultsConfig,
    runs: Vec<ResultsRun>,
}

#[derive(Debug, Deserialize)]
struct ResultsConfig {
    scenario: String,
    #[serde(default = "one_core")]
    server_cores: u32,
}

fn one_core() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
struct ResultsRun {
    role: String,
    throughput_rps: f64,
}

/// Reads the target runs of a `result.json`.
pub(crate) fn read_results(path: &Path) -> anyhow::Result<Measured> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let f: ResultsFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a rayltics-bench result", path.display()))?;
    ensure!(
        f.schema_version == crate::report::SCHEMA_VERSION,
        "{}: schema_version {} (this tool reads {})",
        path.display(),
        f.schema_version,
        crate::report::SCHEMA_VERSION
    );
    ensure!(
        f.config.server_cores >= 1,
        "{}: server_cores must be at least 1",
        path.display()
    );
    let rates: Vec<f64> = f
        .runs
        .iter()
        .filter(|r| r.role == "target")
        .map(|r| r.throughput_rps)
        .collect();
    ensure!(!rates.is_empty(), "{}: no target run", path.display());
    Ok(Measured {
        scenario: f.config.scenario,
        throughput_rps: crate::report::median(&rates),
        server_cores: f.config.server_cores,
        runs: rates.len(),
        source: path.to_path_buf(),
    })
}

/// The arithmetic for one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Line {
    pub(crate) scenario: String,
    pub(crate) requests_per_session: f64,
    pub(crate) daily_active_users: f64,
    pub(crate) average_rps: f64,
    pub(crate) peak_rps: f64,
    pub(crate) measured_rps: f64,
    pub(crate) server_cores: u32,
    pub(crate) per_core_rps: f64,
    pub(crate) usable_per_core_rps: f64,
    pub(crate) cores: f64,
    pub(crate) source: PathBuf,
}

/// The whole estimate (`capacity.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Estimate {
    pub(crate) profile: Profile,
    pub(crate) scenarios: Vec<Line>,
    pub(crate) total_cores: f64,
    pub(crate) nodes: u64,
}

/// Computes the estimate; a scenario of the profile without a measurement is
/// an error naming it.
pub(crate) fn estimate(profile: &Profile, measured: &[Measured]) -> anyhow::Result<Estimate> {
    let mut by_name: BTreeMap<&str, &Measured> = BTreeMap::new();
    for m in measured {
        if let Some(prev) = by_name.insert(m.scenario.as_str(), m) {
            bail!(
                "scenario {:?} is measured twice ({} and {})",
                m.scenario,
                prev.source.display(),
                m.source.display()
            );
        }
    }
    let missing: Vec<&str> = profile
        .requests_per_session
        .keys()
        .map(String::as_str)
        .filter(|s| !by_name.contains_key(s))
        .collect();
    if !missing.is_empty() {
        bail!(
            "no measured result for scenario(s) {} of the profile (measured: {})",
            missing.join(", "),
            by_name.keys().copied().collect::<Vec<_>>().join(", ")
        );
    }
    let dau = profile.monthly_active_users * profile.daily_active_fraction;
    let mut scenarios = Vec::new();
    for (name, &rps_session) in &profile.requests_per_session {
        let m = by_name[name.as_str()];
        let average_rps = dau * profile.sessions_per_user_per_day * rps_session / SECONDS_PER_DAY;
        let peak_rps = average_rps * profile.peak_to_average;
        let per_core_rps = m.throughput_rps / f64::from(m.server_cores);
        let usable_per_core_rps = per_core_rps * profile.target_cpu_utilisation;
        let cores = if peak_rps == 0.0 {
            0.0
        } else {
            ensure!(
                usable_per_core_rps > 0.0,
                "scenario {name:?}: measured throughput is 0 req/s ({})",
                m.source.display()
            );
            peak_rps / usable_per_core_rps * (1.0 + profile.headroom)
        };
        scenarios.push(Line {
            scenario: name.clone(),
            requests_per_session: rps_session,
            daily_active_users: dau,
            average_rps,
            peak_rps,
            measured_rps: m.throughput_rps,
            server_cores: m.server_cores,
            per_core_rps,
            usable_per_core_rps,
            cores,
            source: m.source.clone(),
        });
    }
    let total_cores: f64 = scenarios.iter().map(|l| l.cores).sum();
    Ok(Estimate {
        profile: profile.clone(),
        scenarios,
        total_cores,
        nodes: nodes_for(total_cores, profile.cores_per_node),
    })
}

/// `ceil(cores / cores_per_node)`, forgiving float noise (8.000000000001
/// cores on 4-core nodes is 2 nodes).
pub(crate) fn nodes_for(cores: f64, cores_per_node: u32) -> u64 {
    let n = cores / f64::from(cores_per_node);
    (n - 1e-9).ceil().max(0.0) as u64
}

/// A number for people: grouped thousands, up to 3 decimals below 10.
fn num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        let n = x.round() as i64;
        let s = n.unsigned_abs().to_string();
        let mut out = String::from(if n < 0 { "-" } else { "" });
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(' ');
            }
            out.push(c);
        }
        out
    } else if x.abs() >= 10.0 {
        trim(format!("{x:.1}"))
    } else if x.abs() >= 1.0 || x == 0.0 {
        trim(format!("{x:.3}"))
    } else {
        // Three significant digits: 0.00299, not 0.
        let decimals = (2.0 - x.abs().log10().floor()).clamp(3.0, 12.0) as usize;
        trim(format!("{x:.decimals$}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The Markdown report (also printed on stdout).
pub(crate) fn markdown(e: &Estimate) -> String {
    let p = &e.profile;
    let mut s = String::new();
    let _ = writeln!(s, "# Capacity estimate\n");
    if let Some(d) = &p.description {
        let _ = writeln!(s, "{}\n", d.trim());
    }
    let _ = writeln!(s, "## Profile\n");
    let _ = writeln!(s, "- monthly active users: {}", num(p.monthly_active_users));
    let _ = writeln!(
        s,
        "- daily active fraction: {} (1 = every monthly user is active every day)",
        num(p.daily_active_fraction)
    );
    let _ = writeln!(
        s,
        "- sessions per user per day: {}",
        num(p.sessions_per_user_per_day)
    );
    let _ = writeln!(s, "- peak to average: x{}", num(p.peak_to_average));
    let _ = writeln!(
        s,
        "- target CPU utilisation at peak: {}",
        num(p.target_cpu_utilisation)
    );
    let _ = writeln!(s, "- headroom: {}", num(p.headroom));
    let _ = writeln!(s, "- cores per node: {}", p.cores_per_node);
    let _ = writeln!(s, "\n## Per scenario\n");
    let _ = writeln!(
        s,
        "| scenario | req/session | avg req/s | peak req/s | measured req/s | server cores | req/s per core | usable req/s per core | cores |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in &e.scenarios {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            l.scenario,
            num(l.requests_per_session),
            num(l.average_rps),
            num(l.peak_rps),
            num(l.measured_rps),
            l.server_cores,
            num(l.per_core_rps),
            num(l.usable_per_core_rps),
            num(l.cores)
        );
    }
    let _ = writeln!(
        s,
        "| **total** | | | **{}** | | | | | **{}** |",
        num(e.scenarios.iter().map(|l| l.peak_rps).sum()),
        num(e.total_cores)
    );
    let _ = writeln!(s, "\n## Step by step\n");
    for l in &e.scenarios {
        let _ = writeln!(s, "### {}\n", l.scenario);
        let _ = writeln!(s, "```text");
        let _ = writeln!(
            s,
            "daily active users = MAU x daily_active_fraction = {} x {} = {}",
            num(p.monthly_active_users),
            num(p.daily_active_fraction),
            num(l.daily_active_users)
        );
        let _ = writeln!(
            s,
            "average req/s      = DAU x sessions/day x requests/session / 86400 = {} x {} x {} / 86400 = {}",
            num(l.daily_active_users),
            num(p.sessions_per_user_per_day),
            num(l.requests_per_session),
            num(l.average_rps)
        );
        let _ = writeln!(
            s,
            "peak req/s         = average x peak_to_average = {} x {} = {}",
            num(l.average_rps),
            num(p.peak_to_average),
            num(l.peak_rps)
        );
        let _ = writeln!(
            s,
            "per-core req/s     = measured / server cores = {} / {} = {}",
            num(l.measured_rps),
            l.server_cores,
            num(l.per_core_rps)
        );
        let _ = writeln!(
            s,
            "usable per-core    = per-core x target_cpu_utilisation = {} x {} = {}",
            num(l.per_core_rps),
            num(p.target_cpu_utilisation),
            num(l.usable_per_core_rps)
        );
        let _ = writeln!(
            s,
            "cores              = peak / usable per-core x (1 + headroom) = {} / {} x {} = {}",
            num(l.peak_rps),
            num(l.usable_per_core_rps),
            num(1.0 + p.headroom),
            num(l.cores)
        );
        let _ = writeln!(s, "```\n");
        let _ = writeln!(s, "Measured in `{}`.\n", l.source.display());
    }
    let _ = writeln!(s, "## Total\n");
    let _ = writeln!(s, "```text");
    let _ = writeln!(
        s,
        "total cores = {} = {}",
        e.scenarios
            .iter()
            .map(|l| num(l.cores))
            .collect::<Vec<_>>()
            .join(" + "),
        num(e.total_cores)
    );
    let _ = writeln!(
        s,
        "nodes       = ceil(total cores / cores_per_node) = ceil({} / {}) = {}",
        num(e.total_cores),
        p.cores_per_node,
        e.nodes
    );
    let _ = writeln!(s, "```\n");
    let _ = writeln!(
        s,
        "Assumes the measured server scales linearly with cores and that the scenarios' peaks \
         coincide (their cores add up). The measured throughput is the median over the target's \
         runs of each result file; a closed-loop run measures saturation throughput, an open-loop \
         run only what was offered."
    );
    s
}

/// Arguments of `rayltics-bench capacity`.
#[derive(Debug, clap::Args)]
pub(crate) struct CapacityArgs {
    /// A `result.json` written by `run` (repeat for each scenario).
    #[arg(long = "results", required = true)]
    pub(crate) results: Vec<PathBuf>,
    /// Traffic profile (TOML; examples in bench/profiles/).
    #[arg(long)]
    pub(crate) profile: PathBuf,
    /// Directory for capacity.md and capacity.json (default:
    /// target/bench-results/capacity-<UTC timestamp>).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

/// Runs the subcommand; returns the Markdown printed on stdout.
pub(crate) fn run(args: &CapacityArgs) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&args.profile)
        .with_context(|| format!("reading {}", args.profile.display()))?;
    let profile =
        Profile::parse(&text).with_context(|| format!("profile {}", args.profile.display()))?;
    let measured = args
        .results
        .iter()
        .map(|p| read_results(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let est = estimate(&profile, &measured)?;
    let md = markdown(&est);
    let out = args.out.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("target/bench-results")
            .join(format!("capacity-{}", crate::report::utc_stamps(now).1))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let json = serde_json::to_string_pretty(&est).context("encoding capacity.json")?;
    std::fs::write(out.join("capacity.json"), json + "\n")
        .with_context(|| format!("writing {}", out.join("capacity.json").display()))?;
    std::fs::write(out.join("capacity.md"), &md)
        .with_context(|| format!("writing {}", out.join("capacity.md").display()))?;
    Ok(format!("{md}\nwritten: {}\n", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            description: None,
            monthly_active_users: 864_000.0,
            daily_active_fraction: 0.5,
            sessions_per_user_per_day: 2.0,
            peak_to_average: 3.0,
            target_cpu_utilisation: 0.5,
            headroom: 0.25,
            cores_per_node: 4,
            requests_per_session: BTreeMap::from([
                ("browse".to_string(), 10.0),
                ("healthz".to_string(), 0.0),
            ]),
        }
    }

    fn measured(scenario: &str, rps: f64, cores: u32) -> Measured {
        Measured {
            scenario: scenario.into(),
            throughput_rps: rps,
            server_cores: cores,
            runs: 1,
            source: PathBuf::from(format!("{scenario}.json")),
        }
    }

    #[test]
    fn arithmetic() {
        // DAU 432 000; avg = 432 000 * 2 * 10 / 86 400 = 100 req/s; peak 300.
        // per core 200 / 2 = 100, usable 50; cores = 300 / 50 * 1.25 = 7.5.
        let e = estimate(
            &profile(),
            &[measured("browse", 200.0, 2), measured("healthz", 1e5, 1)],
        )
        .unwrap();
        let b = &e.scenarios[0];
        assert_eq!(b.scenario, "browse");
        assert!((b.daily_active_users - 432_000.0).abs() < 1e-9);
        assert!((b.average_rps - 100.0).abs() < 1e-9);
        assert!((b.peak_rps - 300.0).abs() < 1e-9);
        assert!((b.per_core_rps - 100.0).abs() < 1e-9);
        assert!((b.usable_per_core_rps - 50.0).abs() < 1e-9);
        assert!((b.cores - 7.5).abs() < 1e-9);
        assert_eq!(e.scenarios[1].cores, 0.0);
        assert!((e.total_cores - 7.5).abs() < 1e-9);
        assert_eq!(e.nodes, 2);
    }

    #[test]
    fn nodes_round_up() {
        assert_eq!(nodes_for(0.0, 4), 0);
        assert_eq!(nodes_for(0.1, 4), 1);
        assert_eq!(nodes_for(8.0, 4), 2);
        assert_eq!(nodes_for(8.000_000_000_01, 4), 2);
        assert_eq!(nodes_for(8.01, 4), 3);
    }

    #[test]
    fn missing_scenario_is_named() {
        let err = estimate(&profile(), &[measured("browse", 200.0, 2)]).unwrap_err();
        assert!(err.to_string().contains("healthz"), "{err}");
        let err = estimate(
            &profile(),
            &[
                measured("browse", 1.0, 1),
                measured("browse", 2.0, 1),
                measured("healthz", 2.0, 1),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn zero_throughput_is_an_error() {
        let err = estimate(
            &profile(),
            &[measured("browse", 0.0, 1), measured("healthz", 0.0, 1)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("browse"), "{err}");
    }

    #[test]
    fn example_profiles_parse() {
        for text in [
            include_str!("../profiles/small-shop.toml"),
            include_str!("../profiles/flash-sale-peak.toml"),
        ] {
            let p = Profile::parse(text).unwrap();
            assert!(p.requests_per_session.contains_key("healthz"));
        }
        assert!(Profile::parse("monthly_active_users = 1").is_err());
        let bad = "monthly_active_users = 1\nsessions_per_user_per_day = 1\npeak_to_average = 2\n\
                   target_cpu_utilisation = 1.5\nheadroom = 0\ncores_per_node = 1\n\
                   [requests_per_session]\nx = 1\n";
        assert!(Profile::parse(bad).is_err());
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(num(1_234_567.0), "1 234 567");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(7.5), "7.5");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.781_25), "0.781");
        assert_eq!(num(0.002_996), "0.003");
        assert_eq!(num(0.000_123_4), "0.000123");
    }

    #[test]
    fn end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let result = |scenario: &str, rps: [f64; 3], cores: Option<u32>| {
            let cores = cores.map_or(String::new(), |c| format!(r#""server_cores": {c},"#));
            format!(
                r#"{{"schema_version": 1, "tool": "rayltics-bench",
                    "config": {{"scenario": "{scenario}", {cores} "mode": "closed"}},
                    "runs": [
                      {{"name": "rayltics", "role": "target", "pair": 1, "throughput_rps": {}}},
                      {{"name": "hyper", "role": "baseline", "pair": 1, "throughput_rps": 1.0}},
                      {{"name": "rayltics", "role": "target", "pair": 2, "throughput_rps": {}}},
                      {{"name": "rayltics", "role": "target", "pair": 3, "throughput_rps": {}}}
                    ]}}"#,
                rps[0], rps[1], rps[2]
            )
        };
        let browse = dir.path().join("browse.json");
        let healthz = dir.path().join("healthz.json");
        // Median 200 req/s on 2 cores; server_cores absent = 1.
        std::fs::write(&browse, result("browse", [150.0, 200.0, 900.0], Some(2))).unwrap();
        std::fs::write(&healthz, result("healthz", [1e5, 1e5, 1e5], None)).unwrap();
        let prof = dir.path().join("p.toml");
        std::fs::write(
            &prof,
            "description = \"test\"\nmonthly_active_users = 864000\ndaily_active_fraction = 0.5\n\
             sessions_per_user_per_day = 2\npeak_to_average = 3\ntarget_cpu_utilisation = 0.5\n\
             headroom = 0.25\ncores_per_node = 4\n\n[requests_per_session]\nbrowse = 10\nhealthz = 1\n",
        )
        .unwrap();
        let out = dir.path().join("out");
        let args = CapacityArgs {
            results: vec![browse.clone(), healthz],
            profile: prof.clone(),
            out: Some(out.clone()),
        };
        let printed = run(&args).unwrap();
        assert!(
            printed.contains("| browse | 10 | 100 | 300 | 200 | 2 | 100 | 50 | 7.5 |"),
            "{printed}"
        );
        assert!(printed.contains("= 300 / 50 x 1.25 = 7.5"), "{printed}");
        let md = std::fs::read_to_string(out.join("capacity.md")).unwrap();
        assert!(md.contains("nodes       = ceil("));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("capacity.json")).unwrap())
                .unwrap();
        // healthz: avg 10, peak 30, usable 50 000 per core -> 0.00078 cores.
        let total = json["total_cores"].as_f64().unwrap();
        assert!(
            (total - (7.5 + 30.0 / 50_000.0 * 1.25)).abs() < 1e-9,
            "{total}"
        );
        assert_eq!(json["nodes"], 2);
        assert_eq!(json["scenarios"][1]["server_cores"], 1);

        // A profile scenario without a result is an error naming it.
        let args = CapacityArgs {
            results: vec![browse],
            profile: prof,
            out: Some(out),
        };
        let err = run(&args).unwrap_err();
        assert!(format!("{err:#}").contains("healthz"), "{err:#}");
    }
}
