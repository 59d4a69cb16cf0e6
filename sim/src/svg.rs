//! Line charts as SVG text: axes, ticks, one polyline (with dots) per series, a
//! legend. Enough for the figures of docs/SCALE.md, with no plotting dependency.

use std::fmt::Write;

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub series: Vec<Series>,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const L: f64 = 70.0;
const R: f64 = 190.0;
const T: f64 = 40.0;
const B: f64 = 50.0;
const COLOURS: [&str; 8] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

fn nice_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    }
}

fn label(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}").trim_end_matches('0').to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Chart {
    pub fn render(&self) -> String {
        let pts: Vec<(f64, f64)> = self.series.iter().flat_map(|s| s.points.iter().copied()).collect();
        let fx = |x: f64| if self.log_x { x.max(1e-9).log10() } else { x };
        let (mut x0, mut x1) =
            pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(fx(p.0)), b.max(fx(p.0))));
        let y1 = pts.iter().fold(0f64, |a, p| a.max(p.1));
        if pts.is_empty() {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let ystep = nice_step(if y1 > 0.0 { y1 } else { 1.0 });
        let y1 = (y1 / ystep).ceil().max(1.0) * ystep;
        let px = |x: f64| L + (fx(x) - x0) / (x1 - x0) * (W - L - R);
        let py = |y: f64| H - B - y / y1 * (H - T - B);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
            (W - R + L) / 2.0,
            esc(&self.title)
        );
        // Axes and grid.
        let mut y = 0.0;
        while y <= y1 + 1e-9 {
            let _ = writeln!(
                s,
                r##"<line x1="{L}" x2="{0}" y1="{1:.1}" y2="{1:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>"##,
                W - R,
                py(y),
                L - 6.0,
                py(y) + 4.0,
                label(y)
            );
            y += ystep;
        }
        let xticks: Vec<f64> = if self.log_x {
            (x0.floor() as i32..=x1.ceil() as i32)
                .map(|e| 10f64.powi(e))
                .filter(|v| fx(*v) >= x0 - 1e-9 && fx(*v) <= x1 + 1e-9)
                .collect()
        } else {
            let st = nice_step(x1 - x0);
            let mut v = (x0 / st).ceil() * st;
            let mut out = Vec::new();
            while v <= x1 + 1e-9 {
                out.push(v);
                v += st;
            }
            out
        };
        // With a log axis, the data's own x values are labelled too.
        let mut xs = xticks.clone();
        if self.log_x {
            for p in &pts {
                if !xs.iter().any(|v| (fx(*v) - fx(p.0)).abs() < 0.05) {
                    xs.push(p.0);
                }
            }
        }
        for v in xs {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{T}" y2="{1}" stroke="#eee"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3}</text>"##,
                px(v),
                H - B,
                H - B + 16.0,
                label(v)
            );
        }
        let _ = writeln!(s, r##"<line x1="{L}" x2="{L}" y1="{T}" y2="{}" stroke="#000"/>"##, H - B);
        let _ = writeln!(s, r##"<line x1="{L}" x2="{}" y1="{1}" y2="{1}" stroke="#000"/>"##, W - R, H - B);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (W - R + L) / 2.0,
            H - 12.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">{1}</text>"#,
            (H - B + T) / 2.0,
            esc(&self.y_label)
        );
        for (k, ser) in self.series.iter().enumerate() {
            let c = COLOURS[k % COLOURS.len()];
            let path: Vec<String> =
                ser.points.iter().map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1))).collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            if ser.points.len() <= 40 {
                for p in &ser.points {
                    let _ =
                        writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#, px(p.0), py(p.1));
                }
            }
            let ly = T + 10.0 + 20.0 * k as f64;
            let _ = writeln!(
                s,
                r#"<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="{c}" stroke-width="3"/><text x="{3}" y="{4}">{5}</text>"#,
                W - R + 12.0,
                W - R + 32.0,
                ly,
                W - R + 38.0,
                ly + 4.0,
                esc(&ser.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}
