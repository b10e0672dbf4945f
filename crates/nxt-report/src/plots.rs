//! SVG charts drawn with `plotters` (SVG backend, no system fonts: text goes out as SVG
//! `<text>` and the browser lays it out). Colours are the Okabe-Ito palette, which stays
//! distinguishable under the common colour-vision deficiencies; every chart has axis labels
//! with units and a legend when it has more than one series.

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ReportError;

/// Okabe-Ito colours, in the order series take them.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0xF0, 0xE4, 0x42), // yellow
    RGBColor(0x00, 0x00, 0x00), // black
];

/// Grey for reference lines (the base model).
pub const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// The `i`-th palette colour (cycling).
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn plot_err<E: std::fmt::Display>(e: E) -> ReportError {
    ReportError::Plot(e.to_string())
}

const FONT: &str = "sans-serif";

/// One series of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Colour.
    pub color: RGBColor,
    /// Points `(x, y)`.
    pub points: Vec<(f64, f64)>,
    /// Error bars `(x, lo, hi)`.
    pub errors: Vec<(f64, f64, f64)>,
    /// Dashed line (reference lines).
    pub dashed: bool,
    /// Draw markers at the points (a single point is always marked).
    pub markers: bool,
}

impl Series {
    /// A solid line with markers.
    pub fn new(name: impl Into<String>, color: RGBColor, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            color,
            points,
            errors: Vec::new(),
            dashed: false,
            markers: true,
        }
    }
}

/// A legend entry's swatch.
#[derive(Debug, Clone, Copy)]
enum Swatch {
    Line(RGBColor, bool),
    Dot(RGBColor),
    Block(RGBColor),
}

const LEGEND_FONT_PX: f64 = 17.0;

/// Width of a legend strip for these labels (0 when there is nothing to explain).
fn legend_width(items: &[(String, Swatch)]) -> u32 {
    if items.len() < 2 {
        return 0;
    }
    let chars = items
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    (chars as f64 * LEGEND_FONT_PX / 1.24 * 0.56 + 56.0)
        .ceil()
        .min(380.0) as u32
}

/// Draw a legend strip beside the plot (never over the data): one swatch and label per line,
/// long labels cut with an ellipsis.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    items: &[(String, Swatch)],
) -> Result<(), ReportError> {
    if items.len() < 2 {
        return Ok(());
    }
    let max_chars = 60;
    let style = TextStyle::from((FONT, LEGEND_FONT_PX).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, sw)) in items.iter().enumerate() {
        let y = 56 + 24 * i as i32;
        match *sw {
            Swatch::Line(c, dashed) => {
                let st = ShapeStyle::from(&c).stroke_width(3);
                if dashed {
                    for x in [8, 20] {
                        area.draw(&PathElement::new(vec![(x, y), (x + 8, y)], st))
                            .map_err(plot_err)?;
                    }
                } else {
                    area.draw(&PathElement::new(vec![(8, y), (30, y)], st))
                        .map_err(plot_err)?;
                    area.draw(&Circle::new((19, y), 4, c.filled()))
                        .map_err(plot_err)?;
                }
            }
            Swatch::Dot(c) => area
                .draw(&Circle::new((19, y), 5, c.filled()))
                .map_err(plot_err)?,
            Swatch::Block(c) => area
                .draw(&Rectangle::new([(11, y - 7), (27, y + 7)], c.filled()))
                .map_err(plot_err)?,
        }
        let label: String = if name.chars().count() > max_chars {
            format!(
                "{}...",
                name.chars().take(max_chars - 3).collect::<String>()
            )
        } else {
            name.clone()
        };
        area.draw_text(&label, &style, (38, y)).map_err(plot_err)?;
    }
    Ok(())
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// x axis label (with unit).
    pub x_label: String,
    /// y axis label (with unit).
    pub y_label: String,
    /// Series.
    pub series: Vec<Series>,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Only integer x ticks are labelled.
    pub integer_x: bool,
    /// Fixed y range (else from the data).
    pub y_range: Option<(f64, f64)>,
    /// Fixed x range (else from the data).
    pub x_range: Option<(f64, f64)>,
    /// Size of the plot in pixels (a legend strip is added to its right).
    pub size: (u32, u32),
}

impl LineChart {
    /// A chart with defaults: linear axes, 720x400.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        LineChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            log_x: false,
            integer_x: false,
            y_range: None,
            x_range: None,
            size: (720, 400),
        }
    }
}

fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-12 {
            lo.abs() * 0.1
        } else {
            1.0
        };
        (lo - d, hi + d)
    } else {
        let d = (hi - lo) * frac;
        (lo - d, hi + d)
    }
}

/// A compact number for tick labels.
pub fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (v - v.round()).abs() < 1e-9 && a < 1e6 {
        format!("{}", v.round() as i64)
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Horizontal offsets that keep the error bars of several series at the same x apart.
fn dodged(c: &LineChart) -> Vec<Series> {
    let with_err: Vec<usize> = (0..c.series.len())
        .filter(|&i| !c.series[i].errors.is_empty())
        .collect();
    let m = with_err.len();
    c.series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let Some(j) = with_err.iter().position(|&k| k == i) else {
                return s.clone();
            };
            if m < 2 {
                return s.clone();
            }
            let off = j as f64 - (m - 1) as f64 / 2.0;
            let shift = |x: f64| {
                if c.log_x {
                    x * 10f64.powf(off * 0.012)
                } else {
                    x + off * 0.035
                }
            };
            let mut s = s.clone();
            s.points = s.points.iter().map(|&(x, y)| (shift(x), y)).collect();
            s.errors = s
                .errors
                .iter()
                .map(|&(x, lo, hi)| (shift(x), lo, hi))
                .collect();
            s
        })
        .collect()
}

/// Draw a line chart; returns the SVG.
pub fn line_chart(c: &LineChart) -> Result<String, ReportError> {
    let series = dodged(c);
    let xs = series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.0)
            .chain(s.errors.iter().map(|e| e.0))
    });
    let ys = series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.1)
            .chain(s.errors.iter().flat_map(|e| [e.1, e.2]))
    });
    let (x0, x1) = match c.x_range {
        Some(r) => r,
        None => {
            let (lo, hi) = span(xs.filter(|x| !c.log_x || *x > 0.0)).unwrap_or((1.0, 2.0));
            if c.log_x {
                let (lo, hi) = if hi / lo < 1.5 {
                    (lo / 1.5, hi * 1.5)
                } else {
                    (lo, hi)
                };
                (lo / 1.15, hi * 1.15)
            } else if c.integer_x {
                (lo - 0.3, hi + 0.3)
            } else {
                padded(lo, hi, 0.03)
            }
        }
    };
    let (y0, y1) = match c.y_range {
        Some(r) => r,
        None => {
            let (lo, hi) = span(ys).unwrap_or((0.0, 1.0));
            padded(lo, hi, 0.08)
        }
    };
    let items: Vec<(String, Swatch)> = series
        .iter()
        .filter(|s| !s.name.is_empty())
        .map(|s| {
            let sw = if s.points.len() > 1 {
                Swatch::Line(s.color, s.dashed)
            } else {
                Swatch::Dot(s.color)
            };
            (s.name.clone(), sw)
        })
        .collect();
    let lw = legend_width(&items);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (c.size.0 + lw, c.size.1)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (plot_area, legend_area) = root.split_horizontally(c.size.0);
        let mut builder = ChartBuilder::on(&plot_area);
        builder
            .caption(&c.title, (FONT, 21))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(70);
        if c.log_x {
            let mut chart = builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(plot_err)?;
            draw_lines(&mut chart, c, &series)?;
        } else {
            let mut chart = builder
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(plot_err)?;
            draw_lines(&mut chart, c, &series)?;
        }
        draw_legend(&legend_area, &items)?;
        root.present().map_err(plot_err)?;
    }
    Ok(buf)
}

fn draw_lines<'a, DB, X>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>,
    c: &LineChart,
    series: &[Series],
) -> Result<(), ReportError>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let integer_x = c.integer_x;
    let xfmt = move |v: &f64| {
        if integer_x && (v - v.round()).abs() > 1e-6 {
            String::new()
        } else {
            tick(*v)
        }
    };
    let yfmt = |v: &f64| tick(*v);
    chart
        .configure_mesh()
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .x_label_formatter(&xfmt)
        .y_label_formatter(&yfmt)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 17))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
        .draw()
        .map_err(plot_err)?;
    for s in series {
        let style = ShapeStyle::from(&s.color).stroke_width(2);
        let col = s.color;
        if s.points.len() > 1 {
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(s.points.clone(), 8, 5, style))
                    .map_err(plot_err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.clone(), style))
                    .map_err(plot_err)?;
            }
        }
        if !s.errors.is_empty() {
            let thin = style.stroke_width(1);
            chart
                .draw_series(s.errors.iter().flat_map(|&(x, lo, hi)| {
                    // A vertical bar with caps, as an error bar is drawn by hand so that no
                    // marker lands on it.
                    let (a, b) = chart_caps(x, c.log_x);
                    [
                        PathElement::new(vec![(x, lo), (x, hi)], thin),
                        PathElement::new(vec![(a, lo), (b, lo)], thin),
                        PathElement::new(vec![(a, hi), (b, hi)], thin),
                    ]
                }))
                .map_err(plot_err)?;
        }
        if s.markers || s.points.len() == 1 {
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 4, col.filled())))
                .map_err(plot_err)?;
        }
    }
    Ok(())
}

/// The x extent of an error bar's caps around `x`.
fn chart_caps(x: f64, log_x: bool) -> (f64, f64) {
    if log_x {
        (x / 1.02, x * 1.02)
    } else {
        (x - 0.02, x + 0.02)
    }
}

/// A grouped or stacked bar chart over named categories.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Category names (y axis when horizontal, x axis when vertical).
    pub categories: Vec<String>,
    /// Axis label of the categories (with unit, may be empty).
    pub category_label: String,
    /// Axis label of the values (with unit).
    pub value_label: String,
    /// Groups: legend label, colour, one value per category.
    pub groups: Vec<(String, RGBColor, Vec<f64>)>,
    /// Bars run left to right.
    pub horizontal: bool,
    /// Groups stacked instead of side by side.
    pub stacked: bool,
    /// Print each bar's value next to it.
    pub value_labels: bool,
    /// Width of the plot in pixels (the height follows from the categories when
    /// horizontal; a legend strip is added to the right).
    pub width: u32,
    /// Values are counts: only integer ticks are labelled.
    pub integer_values: bool,
}

fn est_text_px(s: &str, size: f64) -> i32 {
    (s.chars().count() as f64 * size * 0.55).ceil() as i32
}

/// Draw a bar chart; returns the SVG.
pub fn bar_chart(c: &BarChart) -> Result<String, ReportError> {
    let ncat = c.categories.len().max(1);
    let ngroup = c.groups.len().max(1);
    let totals: Vec<f64> = (0..ncat)
        .map(|i| {
            c.groups
                .iter()
                .map(|g| g.2.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let vmax = if c.stacked {
        totals.iter().copied().fold(0.0, f64::max)
    } else {
        c.groups
            .iter()
            .flat_map(|g| g.2.iter().copied())
            .fold(0.0, f64::max)
    };
    let vmax = if vmax <= 0.0 {
        1.0
    } else {
        vmax * if c.value_labels { 1.18 } else { 1.06 }
    };
    let label_px = c
        .categories
        .iter()
        .map(|s| est_text_px(s, 13.0))
        .max()
        .unwrap_or(20);
    let size = if c.horizontal {
        let per = if c.stacked {
            30
        } else {
            14 * ngroup as u32 + 12
        };
        (c.width, 110 + per * ncat as u32)
    } else {
        (c.width, 400)
    };
    let items: Vec<(String, Swatch)> = c
        .groups
        .iter()
        .map(|g| (g.0.clone(), Swatch::Block(g.1)))
        .collect();
    let lw = legend_width(&items);
    let mut buf = String::new();
    {
        let full = SVGBackend::with_string(&mut buf, (size.0 + lw, size.1)).into_drawing_area();
        full.fill(&WHITE).map_err(plot_err)?;
        let (root, legend_area) = full.split_horizontally(size.0);
        let mut builder = ChartBuilder::on(&root);
        builder.caption(&c.title, (FONT, 21)).margin(14);
        let cat_range = -0.5..(ncat as f64 - 0.5);
        let mut chart = if c.horizontal {
            builder
                .x_label_area_size(46)
                .y_label_area_size(label_px + 30 + if c.category_label.is_empty() { 0 } else { 18 })
                .build_cartesian_2d(0.0..vmax, cat_range)
                .map_err(plot_err)?
        } else {
            builder
                .x_label_area_size(50)
                .y_label_area_size(64)
                .build_cartesian_2d(cat_range, 0.0..vmax)
                .map_err(plot_err)?
        };
        let integer_values = c.integer_values;
        let vfmt = move |v: &f64| {
            if integer_values && (v - v.round()).abs() > 1e-6 {
                String::new()
            } else {
                tick(*v)
            }
        };
        let none = |_: &f64| String::new();
        {
            let mut mesh = chart.configure_mesh();
            mesh.label_style((FONT, 16))
                .axis_desc_style((FONT, 17))
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4));
            if c.horizontal {
                mesh.disable_y_mesh()
                    .x_label_formatter(&vfmt)
                    .y_label_formatter(&none)
                    .y_labels(0)
                    .x_desc(c.value_label.as_str());
                if !c.category_label.is_empty() {
                    mesh.y_desc(c.category_label.as_str());
                }
            } else {
                mesh.disable_x_mesh()
                    .y_label_formatter(&vfmt)
                    .x_label_formatter(&none)
                    .x_labels(0)
                    .y_desc(c.value_label.as_str());
                if !c.category_label.is_empty() {
                    mesh.x_desc(c.category_label.as_str());
                }
            }
            mesh.draw().map_err(plot_err)?;
        }
        // Category positions: the first category at the top of a horizontal chart.
        let pos = |i: usize| -> f64 {
            if c.horizontal {
                (ncat - 1 - i) as f64
            } else {
                i as f64
            }
        };
        let band = 0.8;
        let bar_w = if c.stacked {
            band
        } else {
            band / ngroup as f64
        };
        // The first group on top (horizontal) or on the left (vertical).
        let group_lo = |p: f64, gi: usize| -> f64 {
            if c.horizontal {
                p + band / 2.0 - bar_w * (gi + 1) as f64
            } else {
                p - band / 2.0 + bar_w * gi as f64
            }
        };
        for (gi, (_, col, values)) in c.groups.iter().enumerate() {
            let col = *col;
            let mut rects = Vec::new();
            for (i, v) in values.iter().enumerate().take(ncat) {
                let p = pos(i);
                let (a, b) = if c.stacked {
                    (p - band / 2.0, p + band / 2.0)
                } else {
                    let lo = group_lo(p, gi);
                    (lo, lo + bar_w * 0.92)
                };
                let base: f64 = if c.stacked {
                    c.groups[..gi]
                        .iter()
                        .map(|g| g.2.get(i).copied().unwrap_or(0.0))
                        .sum()
                } else {
                    0.0
                };
                let r = if c.horizontal {
                    Rectangle::new([(base, a), (base + v, b)], col.filled())
                } else {
                    Rectangle::new([(a, base), (b, base + v)], col.filled())
                };
                rects.push(r);
            }
            chart.draw_series(rects).map_err(plot_err)?;
            if c.value_labels && !c.stacked {
                for (i, v) in values.iter().enumerate().take(ncat) {
                    let p = pos(i);
                    let mid = group_lo(p, gi) + bar_w * 0.46;
                    let (px, py) = if c.horizontal {
                        chart.backend_coord(&(*v, mid))
                    } else {
                        chart.backend_coord(&(mid, *v))
                    };
                    let (anchor, at) = if c.horizontal {
                        (Pos::new(HPos::Left, VPos::Center), (px + 4, py))
                    } else {
                        (Pos::new(HPos::Center, VPos::Bottom), (px, py - 3))
                    };
                    let style = TextStyle::from((FONT, 14).into_font())
                        .color(&BLACK)
                        .pos(anchor);
                    root.draw_text(&tick(*v), &style, at).map_err(plot_err)?;
                }
            }
        }
        if c.stacked && c.value_labels {
            for (i, t) in totals.iter().enumerate() {
                let (px, py) = chart.backend_coord(&(*t, pos(i)));
                let style = TextStyle::from((FONT, 14).into_font())
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                root.draw_text(&tick(*t), &style, (px + 4, py))
                    .map_err(plot_err)?;
            }
        }
        // Category labels, drawn where the hidden tick labels would be.
        for (i, name) in c.categories.iter().enumerate() {
            let (px, py, anchor) = if c.horizontal {
                let (px, py) = chart.backend_coord(&(0.0, pos(i)));
                (px - 8, py, Pos::new(HPos::Right, VPos::Center))
            } else {
                let (px, py) = chart.backend_coord(&(pos(i), 0.0));
                (px, py + 8, Pos::new(HPos::Center, VPos::Top))
            };
            let style = TextStyle::from((FONT, 16).into_font())
                .color(&BLACK)
                .pos(anchor);
            root.draw_text(name, &style, (px, py)).map_err(plot_err)?;
        }
        draw_legend(&legend_area, &items)?;
        full.present().map_err(plot_err)?;
    }
    Ok(buf)
}

/// One row of a box plot.
#[derive(Debug, Clone)]
pub struct BoxRow {
    /// Label (shown left of the box).
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// The values.
    pub values: Vec<f64>,
}

/// Horizontal box plots (Tukey: box from the first to the third quartile, a line at the
/// median, whiskers to the most extreme values within 1.5 IQR, outliers as dots).
#[derive(Debug, Clone)]
pub struct BoxChart {
    /// Title.
    pub title: String,
    /// Value axis label (with unit).
    pub value_label: String,
    /// Rows, top to bottom.
    pub rows: Vec<BoxRow>,
    /// Width in pixels.
    pub width: u32,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Draw box plots; returns the SVG. Rows without values are drawn as an empty row.
pub fn box_chart(c: &BoxChart) -> Result<String, ReportError> {
    let nrow = c.rows.len().max(1);
    let all = span(c.rows.iter().flat_map(|r| r.values.iter().copied())).unwrap_or((0.0, 1.0));
    let (v0, v1) = padded(all.0.min(0.0), all.1, 0.04);
    let v0 = v0.max(0.0).min(all.0);
    let label_px = c
        .rows
        .iter()
        .map(|r| est_text_px(&r.label, 13.0))
        .max()
        .unwrap_or(20);
    let size = (c.width, 100 + 34 * nrow as u32);
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&c.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(label_px + 24)
            .build_cartesian_2d(v0..v1, -0.5..(nrow as f64 - 0.5))
            .map_err(plot_err)?;
        let vfmt = |v: &f64| tick(*v);
        let none = |_: &f64| String::new();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .y_label_formatter(&none)
            .x_label_formatter(&vfmt)
            .x_desc(c.value_label.as_str())
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 17))
            .max_light_lines(1)
            .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .draw()
            .map_err(plot_err)?;
        for (i, row) in c.rows.iter().enumerate() {
            let y = (nrow - 1 - i) as f64;
            let (px, py) = chart.backend_coord(&(v0, y));
            let style = TextStyle::from((FONT, 16).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Center));
            root.draw_text(&row.label, &style, (px - 8, py))
                .map_err(plot_err)?;
            if row.values.is_empty() {
                continue;
            }
            let mut v = row.values.clone();
            v.sort_by(f64::total_cmp);
            let (q1, med, q3) = (quantile(&v, 0.25), quantile(&v, 0.5), quantile(&v, 0.75));
            let iqr = q3 - q1;
            let lo = v
                .iter()
                .copied()
                .find(|x| *x >= q1 - 1.5 * iqr)
                .unwrap_or(q1);
            let hi = v
                .iter()
                .rev()
                .copied()
                .find(|x| *x <= q3 + 1.5 * iqr)
                .unwrap_or(q3);
            let col = row.color;
            let line = ShapeStyle::from(&BLACK).stroke_width(1);
            let h = 0.3;
            chart
                .draw_series([
                    Rectangle::new([(q1, y - h), (q3, y + h)], col.mix(0.55).filled()),
                    Rectangle::new([(q1, y - h), (q3, y + h)], line),
                ])
                .map_err(plot_err)?;
            chart
                .draw_series([
                    PathElement::new(vec![(med, y - h), (med, y + h)], BLACK.stroke_width(3)),
                    PathElement::new(vec![(lo, y), (q1, y)], line),
                    PathElement::new(vec![(q3, y), (hi, y)], line),
                    PathElement::new(vec![(lo, y - h / 2.0), (lo, y + h / 2.0)], line),
                    PathElement::new(vec![(hi, y - h / 2.0), (hi, y + h / 2.0)], line),
                ])
                .map_err(plot_err)?;
            chart
                .draw_series(
                    v.iter()
                        .filter(|x| **x < lo || **x > hi)
                        .map(|x| Circle::new((*x, y), 2, col.filled())),
                )
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_compact() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(25.0), "25");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(12.25), "12.2");
        assert_eq!(tick(0.0001), "1.0e-4");
    }

    #[test]
    fn charts_are_svg_with_their_labels() {
        let mut c = LineChart::new("t <&>", "k (samples)", "pass@k (%)");
        c.log_x = true;
        c.series
            .push(Series::new("a", color(0), vec![(1.0, 10.0), (5.0, 30.0)]));
        let svg = line_chart(&c).expect("line chart");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert!(svg.contains("pass@k (%)"));
        let b = bar_chart(&BarChart {
            title: "funnel".into(),
            categories: vec!["a".into(), "b".into()],
            category_label: String::new(),
            value_label: "count".into(),
            groups: vec![("iter 1".into(), color(0), vec![3.0, 2.0])],
            horizontal: true,
            stacked: false,
            value_labels: true,
            width: 600,
            integer_values: true,
        })
        .expect("bar chart");
        assert!(b.contains(">\na\n</text>") && b.contains(">\ncount\n</text>"));
        let x = box_chart(&BoxChart {
            title: "len".into(),
            value_label: "tokens".into(),
            rows: vec![
                BoxRow {
                    label: "kept".into(),
                    color: color(1),
                    values: vec![1.0, 2.0, 3.0, 50.0],
                },
                BoxRow {
                    label: "none".into(),
                    color: color(2),
                    values: vec![],
                },
            ],
            width: 600,
        })
        .expect("box chart");
        assert!(x.contains(">\nkept\n</text>"));
    }
}
