//! The results table: each row a measured figure beside its limit, the ratio, the
//! target, and whether it is met. Printed as text and written as JSON.

use serde_json::{json, Value};
use std::path::Path;

/// What a row's figure must satisfy.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// figure / limit >= the value.
    RatioAtLeast(f64),
    /// figure <= limit (the limit is the bound itself).
    AtMost,
    /// figure / limit <= the value (issue 17: a block's bytes on the wire against its size).
    RatioAtMost(f64),
    /// A limit measured for the other rows: nothing to meet.
    None,
}

#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: String,
    pub figure: f64,
    pub unit: &'static str,
    /// The yardstick and what it is.
    pub limit: Option<(f64, String)>,
    pub goal: Goal,
    pub note: String,
}

impl Row {
    pub fn limit(scenario: &str, figure: f64, unit: &'static str, note: &str) -> Row {
        Row { scenario: scenario.into(), figure, unit, limit: None, goal: Goal::None, note: note.into() }
    }

    pub fn ratio(&self) -> Option<f64> {
        self.limit.as_ref().map(|(l, _)| if *l > 0.0 { self.figure / l } else { f64::NAN })
    }

    pub fn met(&self) -> Option<bool> {
        let r = self.ratio()?;
        match self.goal {
            Goal::RatioAtLeast(x) => Some(r >= x),
            Goal::AtMost => Some(r <= 1.0),
            Goal::RatioAtMost(x) => Some(r <= x),
            Goal::None => None,
        }
    }

    pub fn target_text(&self) -> String {
        match self.goal {
            Goal::RatioAtLeast(x) => format!("ratio >= {x}"),
            Goal::AtMost => "<= limit".into(),
            Goal::RatioAtMost(x) => format!("ratio <= {x}"),
            Goal::None => "-".into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "figure": self.figure,
            "unit": self.unit,
            "limit": self.limit.as_ref().map(|(l, _)| *l),
            "limit_is": self.limit.as_ref().map(|(_, w)| w.clone()),
            "ratio": self.ratio(),
            "target": self.target_text(),
            "met": self.met(),
            "note": self.note,
        })
    }
}

// Issue 17: a signature-bound figure is printed against both yardsticks, k256 (the
// consensus library) and libsecp256k1 (the fastest correct check on the machine).
impl Row {
    /// The same figure against another `limit`, as a row printed under this one.
    pub fn against(&self, limit: (f64, String), goal: Goal) -> Row {
        Row {
            scenario: "  same figure, vs".into(),
            figure: self.figure,
            unit: self.unit,
            limit: Some(limit),
            goal,
            note: String::new(),
        }
    }
}

/// Formats a figure with a sensible number of digits.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    if x.abs() >= 1000.0 {
        let s = format!("{:.0}", x);
        // Thousands separators for readability.
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

pub fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<44} {:>16} {:<12} {:>16}  {:<38} {:>7}  {:<11} {:<4}",
        "scenario", "figure", "unit", "limit", "limit is", "ratio", "target", "met"
    );
    println!("{}", "-".repeat(160));
    for r in rows {
        let (limit, what) = match &r.limit {
            Some((l, w)) => (num(*l), w.clone()),
            None => ("-".into(), "-".into()),
        };
        let ratio = r.ratio().map_or("-".into(), |x| format!("{x:.2}"));
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        println!(
            "{:<44} {:>16} {:<12} {:>16}  {:<38} {:>7}  {:<11} {:<4}",
            r.scenario,
            num(r.figure),
            r.unit,
            limit,
            what,
            ratio,
            r.target_text(),
            met
        );
        if !r.note.is_empty() {
            println!("    {}", r.note);
        }
    }
}

pub fn write_json(path: &Path, rows: &[Row], meta: Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let doc = json!({ "meta": meta, "results": rows.iter().map(Row::to_json).collect::<Vec<_>>() });
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap_or_default())
}
