//! What the visits report draws: visits per day, the median and 90th-percentile lobby wait per
//! day, and the no-show rate per week. Pure: from each visit's launch time, status and lobby wait
//! (as [`VisitTimeline`](crate::VisitTimeline) derives them). Days are UTC days, weeks start on
//! Monday, like the rest of the report.

use chrono::{DateTime, Datelike, Days, Duration, NaiveDate, Utc};

use crate::VisitStatus;

/// What the statistics read of one visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitPoint {
    /// When the visit was first launched (the day it counts on).
    pub launched_at: DateTime<Utc>,
    /// Where it stands.
    pub status: VisitStatus,
    /// The patient's wait, if they were admitted.
    pub lobby_wait: Option<Duration>,
}

/// One day of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayStats {
    /// The UTC day.
    pub day: NaiveDate,
    /// Visits launched that day.
    pub visits: usize,
    /// The median lobby wait of that day's visits that have one (the mean of the two middle
    /// waits when their number is even).
    pub lobby_wait_median: Option<Duration>,
    /// The 90th percentile of those waits (nearest rank: the smallest wait that at least 90 % of
    /// them do not exceed).
    pub lobby_wait_p90: Option<Duration>,
}

/// One week of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekStats {
    /// The week's Monday.
    pub week_start: NaiveDate,
    /// Visits launched that week that are over: completed or no-show.
    pub finished: usize,
    /// Of those, no-shows.
    pub no_shows: usize,
}

impl WeekStats {
    /// No-shows among the finished visits, from 0 to 1; `None` when none finished.
    pub fn no_show_rate(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.no_shows as f64 / self.finished as f64)
    }
}

/// Every day from `first` to `last` (both included), with no visit days too.
pub fn per_day(points: &[VisitPoint], first: NaiveDate, last: NaiveDate) -> Vec<DayStats> {
    days(first, last)
        .map(|day| {
            let of_day: Vec<&VisitPoint> = points
                .iter()
                .filter(|p| p.launched_at.date_naive() == day)
                .collect();
            let mut waits: Vec<Duration> = of_day.iter().filter_map(|p| p.lobby_wait).collect();
            waits.sort();
            DayStats {
                day,
                visits: of_day.len(),
                lobby_wait_median: median(&waits),
                lobby_wait_p90: nearest_rank(&waits, 90),
            }
        })
        .collect()
}

/// Every week that has a day from `first` to `last`, Monday first.
pub fn per_week(points: &[VisitPoint], first: NaiveDate, last: NaiveDate) -> Vec<WeekStats> {
    let monday = |d: NaiveDate| d - Days::new(u64::from(d.weekday().num_days_from_monday()));
    let mut weeks: Vec<WeekStats> = Vec::new();
    let mut week = monday(first);
    while week <= last {
        weeks.push(WeekStats {
            week_start: week,
            finished: 0,
            no_shows: 0,
        });
        week = week + Days::new(7);
    }
    for p in points {
        let day = p.launched_at.date_naive();
        if day < first || day > last {
            continue;
        }
        let Some(w) = weeks.iter_mut().find(|w| w.week_start == monday(day)) else {
            continue;
        };
        match p.status {
            VisitStatus::Completed => w.finished += 1,
            VisitStatus::NoShow => {
                w.finished += 1;
                w.no_shows += 1;
            }
            VisitStatus::NotStarted | VisitStatus::Waiting | VisitStatus::InProgress => {}
        }
    }
    weeks
}

fn days(first: NaiveDate, last: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    first.iter_days().take_while(move |d| *d <= last)
}

fn median(sorted: &[Duration]) -> Option<Duration> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

fn nearest_rank(sorted: &[Duration], percent: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    // The smallest rank r with r / n >= percent / 100.
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
    }

    fn point(day: u32, hour: u32, status: VisitStatus, wait_seconds: Option<i64>) -> VisitPoint {
        VisitPoint {
            launched_at: at(day, hour),
            status,
            lobby_wait: wait_seconds.map(Duration::seconds),
        }
    }

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
    }

    #[test]
    fn days_count_visits_and_their_waits_by_hand() {
        use VisitStatus::*;
        let points = [
            // Thursday 5 March: four visits, waits 60, 120, 30, 600 s (one without a wait).
            point(5, 9, Completed, Some(60)),
            point(5, 10, Completed, Some(120)),
            point(5, 11, NoShow, None),
            point(5, 12, Completed, Some(30)),
            point(5, 23, Completed, Some(600)),
            // Friday: one visit, still going, waited 45 s.
            point(6, 0, InProgress, Some(45)),
            // Outside the range.
            point(9, 8, Completed, Some(5)),
        ];
        let days = per_day(&points, date(4), date(7));
        assert_eq!(days.len(), 4, "every day, empty ones too");
        assert_eq!(days[0].visits, 0);
        assert_eq!(days[0].lobby_wait_median, None);
        let thursday = days[1];
        assert_eq!(thursday.day, date(5));
        assert_eq!(thursday.visits, 5);
        // Sorted waits 30, 60, 120, 600: median (60 + 120) / 2 = 90; p90: rank ceil(3.6) = 4.
        assert_eq!(thursday.lobby_wait_median, Some(Duration::seconds(90)));
        assert_eq!(thursday.lobby_wait_p90, Some(Duration::seconds(600)));
        assert_eq!(days[2].visits, 1);
        assert_eq!(days[2].lobby_wait_median, Some(Duration::seconds(45)));
        assert_eq!(days[2].lobby_wait_p90, Some(Duration::seconds(45)));
        assert_eq!(days[3].visits, 0);
    }

    #[test]
    fn weeks_start_on_monday_and_count_only_finished_visits() {
        use VisitStatus::*;
        let points = [
            // Week of Monday 2 March: a completed visit on the Monday (before the range), a
            // no-show, a completed visit, one in progress (not counted).
            point(2, 9, Completed, Some(10)),
            point(4, 9, NoShow, None),
            point(8, 23, Completed, Some(10)),
            point(8, 22, InProgress, None),
            // Week of Monday 9 March: two no-shows.
            point(9, 0, NoShow, None),
            point(15, 23, NoShow, None),
            // Week of Monday 16 March: nothing finished.
            point(16, 10, Waiting, None),
        ];
        let weeks = per_week(&points, date(3), date(16));
        let starts: Vec<NaiveDate> = weeks.iter().map(|w| w.week_start).collect();
        assert_eq!(starts, [date(2), date(9), date(16)]);
        // The range starts on Tuesday 3rd: Monday 2nd's visit is outside it.
        assert_eq!((weeks[0].finished, weeks[0].no_shows), (2, 1));
        assert_eq!(weeks[0].no_show_rate(), Some(0.5));
        assert_eq!((weeks[1].finished, weeks[1].no_shows), (2, 2));
        assert_eq!(weeks[1].no_show_rate(), Some(1.0));
        assert_eq!(weeks[2].no_show_rate(), None);
    }

    #[test]
    fn percentiles_of_few_waits() {
        let s = |v: &[i64]| v.iter().map(|x| Duration::seconds(*x)).collect::<Vec<_>>();
        assert_eq!(median(&s(&[])), None);
        assert_eq!(median(&s(&[7])), Some(Duration::seconds(7)));
        assert_eq!(median(&s(&[1, 2, 9])), Some(Duration::seconds(2)));
        assert_eq!(
            nearest_rank(&s(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 90),
            Some(Duration::seconds(9))
        );
        assert_eq!(
            nearest_rank(&s(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), 90),
            Some(Duration::seconds(10))
        );
        assert_eq!(nearest_rank(&s(&[4]), 90), Some(Duration::seconds(4)));
    }
}
