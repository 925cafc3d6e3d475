//! A plot of a run, as one SVG file beside the JSON report: one or more [`Chart`]s
//! stacked, each with its lines and its marks (a kill, a restart: dashed vertical lines).
//!
//! Scenarios build their charts from their [`Timeline`](super::sampling::Timeline)
//! (devices READY over time, messages per second) or from their own figures (the
//! routing scenario's latency distribution), and [`write_svg`] draws them with
//! `plotters`' SVG backend: no fonts are loaded (the viewer draws the text), no bitmap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Report;
use super::sampling::Timeline;

/// Width and height of one chart, in pixels.
const PANEL: (u32, u32) = (960, 360);
/// Room for the plot's title above the charts.
const TITLE_HEIGHT: u32 = 40;
/// Line colours, in order (matplotlib's first six: easy to tell apart).
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
];

/// One chart: lines over a shared x axis.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    /// Dashed vertical lines at these x, with their labels.
    pub marks: Vec<(f64, String)>,
}

/// One named series of (x, y) points, in x order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Line {
    pub fn new(name: &str, points: Vec<(f64, f64)>) -> Line {
        Line {
            name: name.to_owned(),
            points,
        }
    }
}

/// How a gauge of a timeline is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Its value (devices READY).
    Level,
    /// How fast it grew, per second over the last second (messages accepted).
    PerSecond,
}

impl Chart {
    /// A chart of `timeline` over seconds, with its marks: each of `lines` is a gauge's
    /// name, the label of its line, and how it is drawn.
    pub fn of_timeline(
        title: &str,
        y_label: &str,
        timeline: &Timeline,
        lines: &[(&str, &str, Shape)],
    ) -> Chart {
        Chart {
            title: title.to_owned(),
            x_label: "seconds".to_owned(),
            y_label: y_label.to_owned(),
            lines: lines
                .iter()
                .map(|(gauge, label, shape)| {
                    let points = match shape {
                        Shape::Level => timeline.level(gauge),
                        Shape::PerSecond => timeline.per_second(gauge, Duration::from_secs(1)),
                    };
                    Line::new(label, points)
                })
                .collect(),
            marks: timeline.marks.clone(),
        }
    }
}

/// Writes the plot to `path` and says where in `report` (a summary line and the
/// `plot` field).
pub fn attach(
    report: &mut Report,
    path: &Path,
    title: &str,
    charts: &[Chart],
) -> anyhow::Result<()> {
    write_svg(path, title, charts)?;
    report.line(format!("plot: {}", path.display()));
    report.field("plot", path.display().to_string());
    Ok(())
}

/// The default plot file of `scenario`: `wafleet-load-<scenario>.svg` in the current
/// folder.
pub fn default_path(scenario: &str) -> PathBuf {
    PathBuf::from(format!("wafleet-load-{scenario}.svg"))
}

/// Draws `charts` one above the other under `title` into the SVG file `path`.
pub fn write_svg(path: &Path, title: &str, charts: &[Chart]) -> anyhow::Result<()> {
    let svg = render_svg(title, charts)?;
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}

/// The SVG text of [`write_svg`].
pub fn render_svg(title: &str, charts: &[Chart]) -> anyhow::Result<String> {
    let rows = charts.len().max(1);
    let size = (PANEL.0, TITLE_HEIGHT + PANEL.1 * rows as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        let body = root.titled(title, ("sans-serif", 22))?;
        for (chart, area) in charts.iter().zip(body.split_evenly((rows, 1))) {
            draw(chart, &area)?;
        }
        root.present()?;
    }
    Ok(svg)
}

fn draw(chart: &Chart, area: &DrawingArea<SVGBackend<'_>, Shift>) -> anyhow::Result<()> {
    let ((x_min, x_max), y_max) = bounds(chart);
    let mut ctx = ChartBuilder::on(area)
        .caption(&chart.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x_min..x_max, 0f64..y_max)?;
    ctx.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&|x| number(*x))
        .y_label_formatter(&|y| number(*y))
        .light_line_style(WHITE)
        .draw()?;
    for (i, line) in chart.lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        ctx.draw_series(LineSeries::new(
            line.points.iter().copied(),
            colour.stroke_width(2),
        ))?
        .label(line.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    }
    for (i, (x, label)) in chart.marks.iter().enumerate() {
        let style = BLACK.mix(0.55).stroke_width(1);
        ctx.draw_series(DashedLineSeries::new(
            vec![(*x, 0.0), (*x, y_max)],
            6,
            4,
            style,
        ))?;
        // The label beside its line, on the side with more room (the legend is on
        // the left), on one of four rows so that close marks do not overwrite
        // each other.
        let y = y_max * (1.0 - 0.05 * (i % 4) as f64);
        let right_half = *x > (x_min + x_max) / 2.0;
        let (text, anchor) = if right_half {
            (format!("{label} "), HPos::Right)
        } else {
            (format!(" {label}"), HPos::Left)
        };
        let font = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(anchor, VPos::Top));
        ctx.draw_series(std::iter::once(Text::new(text, (*x, y), font)))?;
    }
    if !chart.lines.is_empty() {
        ctx.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    Ok(())
}

/// An axis label: whole numbers from 10 up, two decimals at most below, no trailing zeros.
fn number(x: f64) -> String {
    if x.abs() >= 10.0 {
        format!("{x:.0}")
    } else {
        let text = format!("{x:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The x range (from 0 or below) and the top of the y range (from 0), with room above
/// the highest point for the legend; never empty.
fn bounds(chart: &Chart) -> ((f64, f64), f64) {
    let points = chart.lines.iter().flat_map(|l| l.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (0f64, 0f64, 0f64);
    for (x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x_min = x_min.min(*x);
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
    }
    for (x, _) in &chart.marks {
        x_max = x_max.max(*x);
    }
    if x_max <= x_min {
        x_max = x_min + 1.0;
    }
    let y_top = if y_max > 0.0 { y_max * 1.2 } else { 1.0 };
    ((x_min, x_max), y_top)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `svg` is well formed as far as its tags go: every element opened is
    /// closed, in order, and the root is `svg`.
    fn tags_balance(svg: &str) -> bool {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        let mut root = None;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else {
                return false;
            };
            let tag = &rest[start + 1..start + end];
            rest = &rest[start + end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                if open.pop() != Some(name.trim()) {
                    return false;
                }
                continue;
            }
            let name = tag
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches('/');
            root.get_or_insert(name.to_owned());
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        open.is_empty() && root.as_deref() == Some("svg")
    }

    #[test]
    fn the_plot_is_an_svg_file_with_every_series_and_mark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.svg");
        let charts = [
            Chart {
                title: "devices READY".into(),
                x_label: "seconds".into(),
                y_label: "devices".into(),
                lines: vec![Line::new(
                    "ready",
                    vec![(0.0, 10.0), (1.0, 6.0), (2.0, 10.0)],
                )],
                marks: vec![(0.9, "kill -9 node-2".into())],
            },
            Chart {
                title: "messages per second".into(),
                x_label: "seconds".into(),
                y_label: "per second".into(),
                lines: vec![
                    Line::new("accepted/s", vec![(0.5, 40.0), (1.5, 38.0)]),
                    Line::new("delivered/s", vec![(0.5, 39.0), (1.5, 41.0)]),
                ],
                marks: Vec::new(),
            },
        ];
        write_svg(&path, "failover <&> test", &charts).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.trim_start().starts_with("<svg"), "{svg:.200}");
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(tags_balance(&svg), "tags do not balance");
        for text in ["ready", "accepted/s", "delivered/s", "kill -9 node-2"] {
            assert!(svg.contains(text), "{text} missing");
        }
        // The title's special characters are escaped, so the file stays valid XML.
        assert!(svg.contains("failover &lt;&amp;&gt; test"));
        assert!(
            svg.matches("<polyline").count() >= 3,
            "a polyline per series"
        );
    }

    #[test]
    fn an_empty_chart_still_draws() {
        let svg = render_svg("empty", &[Chart::default()]).unwrap();
        assert!(tags_balance(&svg));
        assert!(render_svg("none", &[]).is_ok());
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(number(900.0), "900");
        assert_eq!(number(12.6), "13");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(0.126), "0.13");
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn bounds_leave_room_above_and_never_collapse() {
        let chart = Chart {
            lines: vec![Line::new("a", vec![(2.0, 5.0), (4.0, 10.0)])],
            ..Chart::default()
        };
        assert_eq!(bounds(&chart), ((0.0, 4.0), 12.0));
        assert_eq!(bounds(&Chart::default()), ((0.0, 1.0), 1.0));
    }
}
