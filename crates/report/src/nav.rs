//! What a report page offers around its table, as plain data a template writes out: the filter
//! form's choices, the sortable column headers and the page links. Every link is a query
//! string of [`ReportFilter::to_query`], so it works without script and reads back exactly.

use visitbridge_store::{ReportSort, VisitStatus};

use crate::{Period, Report, ReportFilter, sort_label, status_label};

/// A choice of a `<select>` or a checkbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The value sent.
    pub value: String,
    /// What it is called.
    pub label: String,
    /// Chosen now.
    pub selected: bool,
}

/// The filter form, filled in with the report's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterForm {
    /// "Last 7 / 30 / 90 days", and "Dates below" (value empty) when a range is chosen.
    pub periods: Vec<Choice>,
    /// The range's first day, when one is chosen (`YYYY-MM-DD`).
    pub from: String,
    /// Its last day.
    pub to: String,
    /// Every configuration the reader may see ("All" first, value empty).
    pub configurations: Vec<Choice>,
    /// Every department of their visits ("All" first, value empty).
    pub departments: Vec<Choice>,
    /// One checkbox per status.
    pub statuses: Vec<Choice>,
    /// The sort kept across a new filter (hidden fields): name and value pairs.
    pub hidden: Vec<(String, String)>,
}

/// A sortable column header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSort {
    /// The column's title.
    pub label: &'static str,
    /// The query string that sorts by it (the other way round when it is the sort now).
    pub query: String,
    /// `aria-sort`: `ascending`, `descending` or `none`.
    pub aria_sort: &'static str,
    /// What a reader sees of the sort: "▲", "▼" or nothing.
    pub indicator: &'static str,
}

/// A link to a page of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLink {
    /// The page's number, from 1.
    pub number: u32,
    /// Its query string.
    pub query: String,
    /// The page shown now.
    pub current: bool,
}

/// The page links under the table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pager {
    /// The previous page's query string.
    pub previous: Option<String>,
    /// The next page's.
    pub next: Option<String>,
    /// The first, the last, and the pages around the current one, in order; `None` where pages
    /// are left out ("…").
    pub pages: Vec<Option<PageLink>>,
}

fn choice(value: impl Into<String>, label: impl Into<String>, selected: bool) -> Choice {
    Choice {
        value: value.into(),
        label: label.into(),
        selected,
    }
}

/// The filter form of `report`.
pub fn filter_form(report: &Report) -> FilterForm {
    let f = &report.filter;
    let mut periods: Vec<Choice> = Period::CHOICES
        .iter()
        .map(|&d| {
            choice(
                d.to_string(),
                format!("Last {d} days"),
                f.period == Period::LastDays(d),
            )
        })
        .collect();
    let (from, to) = match f.period {
        Period::Dates { from, to } => (from.to_string(), to.to_string()),
        Period::LastDays(_) => (String::new(), String::new()),
    };
    periods.push(choice(
        "",
        "The dates below",
        matches!(f.period, Period::Dates { .. }),
    ));
    let mut configurations = vec![choice("", "All", f.configuration.is_none())];
    configurations.extend(report.configurations.iter().map(|c| {
        choice(
            c.id.clone(),
            format!("{} ({})", c.fhir_base_url, c.environment),
            f.configuration.as_ref().is_some_and(|s| s.as_str() == c.id),
        )
    }));
    let mut departments = vec![choice("", "All", f.department.is_none())];
    departments.extend(
        report
            .departments
            .iter()
            .map(|d| choice(d.clone(), d.clone(), f.department.as_ref() == Some(d))),
    );
    // A department asked for that no visit has (any more) is still shown as chosen.
    if let Some(d) = &f.department
        && !report.departments.contains(d)
    {
        departments.push(choice(d.clone(), d.clone(), true));
    }
    let statuses = VisitStatus::ALL
        .iter()
        .map(|&s| choice(s.as_str(), status_label(s), f.statuses.contains(&s)))
        .collect();
    let mut hidden = Vec::new();
    if f.sort != ReportFilter::default().sort || !f.descending {
        hidden.push(("sort".to_owned(), f.sort.as_str().to_owned()));
        hidden.push((
            "order".to_owned(),
            if f.descending { "desc" } else { "asc" }.to_owned(),
        ));
    }
    FilterForm {
        periods,
        from,
        to,
        configurations,
        departments,
        statuses,
        hidden,
    }
}

/// The sortable headers of `report`'s table, in [`ReportSort::ALL`]'s order.
pub fn column_sorts(report: &Report) -> Vec<ColumnSort> {
    let f = &report.filter;
    ReportSort::ALL
        .iter()
        .map(|&sort| {
            let (aria_sort, indicator) = match (f.sort == sort, f.descending) {
                (true, true) => ("descending", "▼"),
                (true, false) => ("ascending", "▲"),
                (false, _) => ("none", ""),
            };
            ColumnSort {
                label: sort_label(sort),
                query: f.sorted_by(sort).to_query(),
                aria_sort,
                indicator,
            }
        })
        .collect()
}

/// The page links of `report`: previous, next, the first and last pages and two either side of
/// the current one.
pub fn pager(report: &Report) -> Pager {
    let f = &report.filter;
    let last = report.pages.max(1);
    let current = f.page;
    let link = |n: u32| PageLink {
        number: n,
        query: f.on_page(n).to_query(),
        current: n == current,
    };
    let mut pages = Vec::new();
    let mut previous_shown = 0;
    for n in 1..=last {
        let near = n + 2 >= current && n <= current + 2;
        if n == 1 || n == last || near {
            if n > previous_shown + 1 {
                pages.push(None);
            }
            pages.push(Some(link(n)));
            previous_shown = n;
        }
    }
    Pager {
        previous: (current > 1).then(|| f.on_page((current - 1).min(last)).to_query()),
        next: (current < last).then(|| f.on_page(current + 1).to_query()),
        pages: if last > 1 { pages } else { Vec::new() },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn report(filter: ReportFilter, pages: u32) -> Report {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap();
        let (since, before) = filter.period.bounds(now);
        Report {
            days_shown: filter.period.days_shown(now),
            filter,
            since,
            before,
            total: u64::from(pages) * 50,
            pages,
            configurations: Vec::new(),
            departments: vec!["EMC FAMILY MEDICINE".to_owned()],
            visits: Vec::new(),
            points: None,
            outcomes_pending: false,
        }
    }

    #[test]
    fn pages_far_from_the_current_one_are_left_out() {
        let f = ReportFilter {
            page: 6,
            ..ReportFilter::default()
        };
        let p = pager(&report(f, 20));
        let numbers: Vec<Option<u32>> = p
            .pages
            .iter()
            .map(|l| l.as_ref().map(|l| l.number))
            .collect();
        assert_eq!(
            numbers,
            vec![
                Some(1),
                None,
                Some(4),
                Some(5),
                Some(6),
                Some(7),
                Some(8),
                None,
                Some(20)
            ]
        );
        assert_eq!(p.previous.as_deref(), Some("days=30&page=5"));
        assert_eq!(p.next.as_deref(), Some("days=30&page=7"));
        assert!(p.pages.iter().flatten().any(|l| l.current && l.number == 6));
        // One page: no links at all.
        assert_eq!(pager(&report(ReportFilter::default(), 1)), Pager::default());
    }

    #[test]
    fn the_current_sort_is_marked_and_turns_round() {
        let sorts = column_sorts(&report(ReportFilter::default(), 1));
        let launched = &sorts[0];
        assert_eq!(
            (launched.aria_sort, launched.indicator),
            ("descending", "▼")
        );
        assert_eq!(launched.query, "days=30&sort=launched&order=asc");
        assert!(sorts[1..].iter().all(|s| s.aria_sort == "none"));
    }

    #[test]
    fn the_form_shows_what_is_chosen() {
        let f = ReportFilter::from_query(Some(
            "from=2026-03-01&to=2026-03-05&department=Gone&status=no-show",
        ))
        .unwrap();
        let form = filter_form(&report(f, 1));
        assert_eq!(
            (form.from.as_str(), form.to.as_str()),
            ("2026-03-01", "2026-03-05")
        );
        assert!(form.periods.last().unwrap().selected);
        assert!(
            form.departments
                .iter()
                .any(|d| d.value == "Gone" && d.selected)
        );
        assert!(
            form.statuses
                .iter()
                .any(|s| s.value == "no-show" && s.selected)
        );
        assert_eq!(form.statuses.iter().filter(|s| s.selected).count(), 1);
    }
}
