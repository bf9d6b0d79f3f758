//! Figures (SPEC §1.6), each drawn once for PNG and once for SVG from the same code.

use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::curves::{BitsCurves, Point};

/// Figure size in pixels.
pub const PANEL: (u32, u32) = (420, 360);

static FONT: Once = Once::new();

/// Registers the bundled DejaVu Sans as `sans-serif` for bitmap text.
fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        // The font is bundled and valid; a failure here would only lose bitmap text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// A figure as PNG and SVG bytes.
pub struct Figure {
    /// PNG file bytes.
    pub png: Vec<u8>,
    /// SVG text.
    pub svg: String,
    /// Pixel size.
    pub size: (u32, u32),
}

/// Runs the drawing `$body` (which uses `$root`) once on a bitmap and once on an SVG canvas of
/// `$size`: the same code, so the PNG and the SVG show the same figure.
macro_rules! render {
    ($size:expr, |$root:ident| $body:expr) => {{
        register_font();
        let size: (u32, u32) = $size;
        let mut rgb = vec![255u8; (size.0 * size.1 * 3) as usize];
        {
            let $root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
            $body?;
            $root.present().map_err(err)?;
        }
        let mut svg = String::new();
        {
            let $root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            $body?;
            $root.present().map_err(err)?;
        }
        Ok(Figure {
            png: encode_png(&rgb, size)?,
            svg,
            size,
        })
    }};
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// Colour of a label's curves.
fn label_colour(label: &str, i: usize) -> RGBColor {
    match label {
        "color" => RGBColor(200, 30, 30),
        "direction" => RGBColor(30, 70, 200),
        "target" => RGBColor(30, 150, 60),
        _ => {
            let c = Palette99::pick(i).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

fn y_range<'a>(points: impl Iterator<Item = &'a Point>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for p in points {
        if p.2.is_finite() {
            lo = lo.min(p.2);
        }
        if p.3.is_finite() {
            hi = hi.max(p.3);
        }
    }
    (lo - 0.05)..(hi + 0.05)
}

/// The colour of the `i`th configuration in a comparison.
fn config_colour(i: usize) -> RGBColor {
    const COLOURS: [RGBColor; 6] = [
        RGBColor(200, 30, 30),
        RGBColor(30, 70, 200),
        RGBColor(30, 150, 60),
        RGBColor(150, 60, 170),
        RGBColor(230, 120, 20),
        RGBColor(20, 150, 160),
    ];
    COLOURS.get(i).copied().unwrap_or_else(|| {
        let c = Palette99::pick(i).to_rgba();
        RGBColor(c.0, c.1, c.2)
    })
}

/// The y range of curves and, if any, a null band.
fn y_range_with(points: &[&Point], null: Option<(f64, f64)>) -> std::ops::Range<f64> {
    let r = y_range(points.iter().copied());
    match null {
        Some((lo, hi)) => r.start.min(lo - 0.05)..r.end.max(hi + 0.05),
        None => r,
    }
}

/// Draws mean lines with 95% bands on one panel, over a grey band where the shuffled-label null
/// lies (the noise floor), when it was measured.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    y: std::ops::Range<f64>,
    series: &[(String, RGBColor, &[Point])],
    null: Option<(f64, f64)>,
) -> Result<()> {
    let x_max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..x_max, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    if let Some((lo, hi)) = null {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, lo), (x_max, hi)],
                grey.mix(0.3).filled(),
            )))
            .map_err(err)?
            .label("shuffled-label null")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 4), (x + 18, y + 4)], grey.mix(0.3).filled())
            });
    }
    for (label, colour, points) in series {
        let colour = *colour;
        let mut band: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.3)).collect();
        band.extend(points.iter().rev().map(|p| (p.0, p.2)));
        chart
            .draw_series(std::iter::once(Polygon::new(
                band,
                colour.mix(0.2).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.0, p.1)),
                colour.stroke_width(2),
            ))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Usable information vs epoch, one panel per layer, one curve per label (mean over seeds with
/// its 95% band), over the layer's shuffled-label null band.
pub fn bits_vs_epoch(
    config: &str,
    decoder: &str,
    curves: &BitsCurves,
    null: &NullBands,
) -> Result<Figure> {
    let n = curves.len().max(1) as u32;
    render!((PANEL.0 * n, PANEL.1 + 30), |root| draw_bits(
        &root, config, decoder, curves, null
    ))
}

/// The (lowest, highest) shuffled-label null bits per layer (index, name).
pub type NullBands = std::collections::BTreeMap<(i64, String), (f64, f64)>;

fn draw_bits<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    config: &str,
    decoder: &str,
    curves: &BitsCurves,
    null: &NullBands,
) -> Result<()> {
    let n = curves.len().max(1);
    let points: Vec<&Point> = curves
        .values()
        .flat_map(|labels| labels.values().flatten())
        .collect();
    let band = null
        .values()
        .copied()
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    let y = y_range_with(&points, band);
    {
        root.fill(&WHITE).map_err(err)?;
        let (top, body) = root.split_vertically(30);
        top.titled(
            &format!("{config}: usable information ({decoder} decoder)"),
            ("sans-serif", 18),
        )
        .map_err(err)?;
        for (area, (key, labels)) in body.split_evenly((1, n)).iter().zip(curves) {
            let series: Vec<(String, RGBColor, &[Point])> = labels
                .iter()
                .enumerate()
                .map(|(i, (l, pts))| (l.clone(), label_colour(l, i), pts.as_slice()))
                .collect();
            panel(
                area,
                &key.1,
                "usable information (bits)",
                y.clone(),
                &series,
                null.get(key).copied(),
            )?;
        }
        Ok(())
    }
}

/// One panel of a comparison: its label, and each configuration's curve.
pub type ComparisonPanel = (String, Vec<(String, Vec<Point>)>);

/// One layer's curves of every configuration on one axis, a panel per label: how the regimes
/// diverge at a glance.
pub fn comparison(
    title: &str,
    panels: &[ComparisonPanel],
    null: Option<(f64, f64)>,
) -> Result<Figure> {
    let n = panels.len().max(1) as u32;
    render!(
        (PANEL.0 * n + 60 * n, PANEL.1 + 30),
        |root| draw_comparison(&root, title, panels, null)
    )
}

fn draw_comparison<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[ComparisonPanel],
    null: Option<(f64, f64)>,
) -> Result<()> {
    let points: Vec<&Point> = panels
        .iter()
        .flat_map(|(_, configs)| configs.iter().flat_map(|(_, p)| p))
        .collect();
    let y = y_range_with(&points, null);
    root.fill(&WHITE).map_err(err)?;
    let (top, body) = root.split_vertically(30);
    top.titled(title, ("sans-serif", 18)).map_err(err)?;
    let areas = body.split_evenly((1, panels.len().max(1)));
    for (area, (label, configs)) in areas.iter().zip(panels) {
        let series: Vec<(String, RGBColor, &[Point])> = configs
            .iter()
            .enumerate()
            .map(|(i, (c, pts))| (c.clone(), config_colour(i), pts.as_slice()))
            .collect();
        panel(
            area,
            label,
            "usable information (bits)",
            y.clone(),
            &series,
            null,
        )?;
    }
    Ok(())
}

/// Training and validation loss and accuracy vs epoch (mean over seeds with 95% band).
pub fn training_curves(config: &str, metrics: &Metrics) -> Result<Figure> {
    render!((PANEL.0 * 2, PANEL.1 + 30), |root| draw_training(
        &root, config, metrics
    ))
}

/// Metric name → points.
pub type Metrics = std::collections::BTreeMap<String, Vec<Point>>;

fn draw_training<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    config: &str,
    metrics: &Metrics,
) -> Result<()> {
    let get = |k: &str| metrics.get(k).map(Vec::as_slice).unwrap_or(&[]);
    {
        root.fill(&WHITE).map_err(err)?;
        let (top, body) = root.split_vertically(30);
        top.titled(&format!("{config}: training"), ("sans-serif", 18))
            .map_err(err)?;
        let areas = body.split_evenly((1, 2));
        let (train, val) = (RGBColor(90, 90, 90), RGBColor(230, 120, 20));
        let range = |a: &str, b: &str| y_range(get(a).iter().chain(get(b)));
        panel(
            &areas[0],
            "loss",
            "cross-entropy (nats)",
            range("train_loss", "val_loss"),
            &[
                ("train".into(), train, get("train_loss")),
                ("validation".into(), val, get("val_loss")),
            ],
            None,
        )?;
        panel(
            &areas[1],
            "accuracy",
            "accuracy",
            range("train_accuracy", "val_accuracy"),
            &[
                ("train".into(), train, get("train_accuracy")),
                ("validation".into(), val, get("val_accuracy")),
            ],
            None,
        )?;
        Ok(())
    }
}

/// A heat map of `values[row][col]` with row and column labels.
pub fn heat_map(grid: &Grid) -> Result<Figure> {
    let size = (
        (160 * grid.cols.len() as u32 + 120).max(480),
        (90 * grid.rows.len() as u32 + 110).max(320),
    );
    render!(size, |root| draw_heat_map(&root, grid))
}

/// A table of values with labelled rows and columns.
pub struct Grid<'a> {
    /// Figure title.
    pub title: &'a str,
    /// What the rows are.
    pub row_name: &'a str,
    /// Row labels.
    pub rows: Vec<String>,
    /// What the columns are.
    pub col_name: &'a str,
    /// Column labels.
    pub cols: Vec<String>,
    /// `values[row][col]`, None where not measured.
    pub values: Vec<Vec<Option<f64>>>,
}

fn draw_heat_map<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, g: &Grid) -> Result<()> {
    let (title, row_name, rows, col_name, cols, values) =
        (g.title, g.row_name, &g.rows, g.col_name, &g.cols, &g.values);
    let max = values
        .iter()
        .flatten()
        .flatten()
        .cloned()
        .fold(1e-9f64, f64::max);
    {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..cols.len() as f64, 0f64..rows.len() as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(col_name)
            .y_desc(row_name)
            .x_labels(cols.len() * 2 + 1)
            .y_labels(rows.len() * 2 + 1)
            .x_label_formatter(&|x| label_at(cols, *x))
            .y_label_formatter(&|y| label_at(rows, *y))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        for (r, row) in values.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let (x, y) = (c as f64, r as f64);
                let fill = match v {
                    Some(v) => {
                        let t = (v / max).clamp(0.0, 1.0);
                        RGBColor(
                            255,
                            (255.0 * (1.0 - 0.85 * t)) as u8,
                            (255.0 * (1.0 - 0.85 * t)) as u8,
                        )
                    }
                    None => RGBColor(220, 220, 220),
                };
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x, y), (x + 1.0, y + 1.0)],
                        fill.filled(),
                    )))
                    .map_err(err)?;
                let text = v
                    .map(|v| format!("{v:.2} bits"))
                    .unwrap_or_else(|| "n/a".into());
                chart
                    .draw_series(std::iter::once(Text::new(
                        text,
                        (x + 0.3, y + 0.55),
                        ("sans-serif", 14),
                    )))
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

/// The label of the category whose cell centre is at `x` (blank between centres).
fn label_at(labels: &[String], x: f64) -> String {
    let i = x - 0.5;
    if (i - i.round()).abs() < 1e-6 && i >= 0.0 {
        labels.get(i.round() as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}
