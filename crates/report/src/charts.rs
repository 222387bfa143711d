//! The visits report's charts, drawn on the server as SVG (no script needed, and what a test
//! reads is what a browser shows): visits per day, median and 90th-percentile lobby wait per
//! day, no-show rate per week. Each has a title and a description for screen readers, and the
//! page puts its numbers in a table beside it. The numbers are `visitbridge_audit::stats`'s.

use chrono::NaiveDate;
use visitbridge_audit::stats::{DayStats, WeekStats, per_day, per_week};

use crate::Report;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

/// One chart: its SVG and the table of its numbers.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The element id prefix (unique on the page).
    pub id: &'static str,
    /// Its title (also the SVG's `<title>`).
    pub title: String,
    /// The SVG, every text in it escaped.
    pub svg: String,
    /// The first column's header.
    pub x_header: &'static str,
    /// The other columns' headers.
    pub series: Vec<&'static str>,
    /// One row per bar group: its label and its values as text.
    pub rows: Vec<(String, Vec<String>)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Bars of `groups` (label, one value per series), on one scale from 0.
fn bars_svg(
    id: &str,
    title: &str,
    description: &str,
    series_classes: &[&str],
    groups: &[(String, Vec<f64>)],
    axis_max_label: &dyn Fn(f64) -> String,
) -> String {
    let max = groups
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / groups.len().max(1) as f64;
    let bar_w = (slot * 0.8) / series_classes.len().max(1) as f64;
    // At most about twelve labels under the axis.
    let label_every = groups.len().div_ceil(12).max(1);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         role=\"img\" aria-labelledby=\"{id}-title {id}-desc\">\
         <title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
        escape(title),
        escape(description)
    );
    let base = HEIGHT - BOTTOM;
    svg.push_str(&format!(
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\"/>\
         <text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text class=\"tick\" x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        WIDTH - 8.0,
        LEFT - 4.0,
        TOP + 4.0,
        escape(&axis_max_label(max)),
        LEFT - 4.0,
    ));
    for (n, (label, values)) in groups.iter().enumerate() {
        let x0 = LEFT + slot * n as f64 + slot * 0.1;
        for (s, value) in values.iter().enumerate() {
            let h = (value / scale) * plot_h;
            let class = series_classes.get(s).copied().unwrap_or("bar");
            svg.push_str(&format!(
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>",
                x0 + bar_w * s as f64,
                base - h,
                bar_w,
                h
            ));
        }
        if n % label_every == 0 {
            svg.push_str(&format!(
                "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x0 + slot * 0.4,
                HEIGHT - 10.0,
                escape(label)
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

fn short_day(day: NaiveDate) -> String {
    day.format("%m-%d").to_string()
}

fn seconds_text(seconds: Option<i64>) -> String {
    seconds.map_or_else(|| "–".to_owned(), |s| format!("{s} s"))
}

/// The three charts of a report's visits (its points: every visit the filter matches, not only
/// the page's), over the report's days; none when the report was made without its points.
pub fn of(report: &Report) -> Vec<Chart> {
    let Some(points) = &report.points else {
        return Vec::new();
    };
    let (first, today) = report.days_shown;
    let days: Vec<DayStats> = per_day(points, first, today);
    let weeks: Vec<WeekStats> = per_week(points, first, today);
    let period = format!("{first} to {today} (UTC)");

    let visit_groups: Vec<(String, Vec<f64>)> = days
        .iter()
        .map(|d| (short_day(d.day), vec![d.visits as f64]))
        .collect();
    let visits = Chart {
        id: "chart-visits",
        title: "Visits per day".to_owned(),
        svg: bars_svg(
            "chart-visits",
            "Visits per day",
            &format!(
                "Visits launched each day, {period}: {} in all, at most {} in a day.",
                points.len(),
                days.iter().map(|d| d.visits).max().unwrap_or(0)
            ),
            &["bar"],
            &visit_groups,
            &|max| format!("{max:.0}"),
        ),
        x_header: "Day",
        series: vec!["Visits"],
        rows: days
            .iter()
            .map(|d| (d.day.to_string(), vec![d.visits.to_string()]))
            .collect(),
    };

    let secs = |d: Option<chrono::Duration>| d.map(|d| d.num_seconds());
    let wait_groups: Vec<(String, Vec<f64>)> = days
        .iter()
        .map(|d| {
            (
                short_day(d.day),
                vec![
                    secs(d.lobby_wait_median).unwrap_or(0) as f64,
                    secs(d.lobby_wait_p90).unwrap_or(0) as f64,
                ],
            )
        })
        .collect();
    let waits = Chart {
        id: "chart-waits",
        title: "Lobby wait per day: median and 90th percentile".to_owned(),
        svg: bars_svg(
            "chart-waits",
            "Lobby wait per day: median and 90th percentile",
            &format!(
                "Seconds patients waited before admission, per day, {period}: the median and the \
                 90th percentile of the day's visits with a wait; days without one show none."
            ),
            &["bar", "bar-second"],
            &wait_groups,
            &|max| format!("{max:.0} s"),
        ),
        x_header: "Day",
        series: vec!["Median wait", "90th percentile"],
        rows: days
            .iter()
            .map(|d| {
                (
                    d.day.to_string(),
                    vec![
                        seconds_text(secs(d.lobby_wait_median)),
                        seconds_text(secs(d.lobby_wait_p90)),
                    ],
                )
            })
            .collect(),
    };

    let rate_groups: Vec<(String, Vec<f64>)> = weeks
        .iter()
        .map(|w| {
            (
                short_day(w.week_start),
                vec![w.no_show_rate().unwrap_or(0.0) * 100.0],
            )
        })
        .collect();
    let no_shows = Chart {
        id: "chart-no-shows",
        title: "No-show rate per week".to_owned(),
        svg: bars_svg(
            "chart-no-shows",
            "No-show rate per week",
            &format!(
                "Share of the week's finished visits (completed or no-show) where staff and \
                 patient were never in together, per week starting Monday, {period}."
            ),
            &["bar"],
            &rate_groups,
            &|max| format!("{max:.0} %"),
        ),
        x_header: "Week of",
        series: vec!["Finished visits", "No-shows", "No-show rate"],
        rows: weeks
            .iter()
            .map(|w| {
                (
                    w.week_start.to_string(),
                    vec![
                        w.finished.to_string(),
                        w.no_shows.to_string(),
                        w.no_show_rate()
                            .map_or_else(|| "–".to_owned(), |r| format!("{:.0} %", r * 100.0)),
                    ],
                )
            })
            .collect(),
    };
    vec![visits, waits, no_shows]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_a_chart_is_escaped_and_bars_scale_to_the_largest() {
        let svg = bars_svg(
            "c",
            "A <b>title</b> & more",
            "d\"x",
            &["bar"],
            &[("a".into(), vec![1.0]), ("b".into(), vec![4.0])],
            &|m| format!("{m:.0}"),
        );
        assert!(svg.contains("A &lt;b&gt;title&lt;/b&gt; &amp; more"));
        assert!(svg.contains("d&quot;x"));
        assert!(!svg.contains("<b>"));
        let heights: Vec<f64> = svg
            .split("height=\"")
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
            .collect();
        assert_eq!(heights.len(), 2);
        assert!((heights[1] / heights[0] - 4.0).abs() < 0.05, "{heights:?}");
    }
}
