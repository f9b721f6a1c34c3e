//! The working calendar: deadlines in working time. Qingdao's offices work Monday to Friday
//! (times in China Standard Time, UTC+8, no daylight saving); public holidays and the weekend
//! days worked in exchange (调休) are configured per date, since the State Council publishes
//! them each year.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Weekday};
use std::collections::HashMap;

/// China Standard Time.
pub fn cst() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

#[derive(Debug, Clone)]
pub struct WorkCalendar {
    /// Minutes after midnight the working day starts and ends.
    pub day_start_min: u32,
    pub day_end_min: u32,
    /// Dates that differ from the weekday rule: `false` a holiday, `true` a worked weekend day.
    pub exceptions: HashMap<NaiveDate, bool>,
}

impl Default for WorkCalendar {
    fn default() -> Self {
        Self {
            day_start_min: 9 * 60,
            day_end_min: 17 * 60,
            exceptions: HashMap::new(),
        }
    }
}

/// How a deadline counts time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Working minutes on the calendar.
    Working,
    /// Every minute (emergencies).
    Natural,
}

impl WorkCalendar {
    pub fn working_minutes_per_day(&self) -> i64 {
        i64::from(self.day_end_min.saturating_sub(self.day_start_min))
    }

    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        self.exceptions
            .get(&date)
            .copied()
            .unwrap_or(!matches!(date.weekday(), Weekday::Sat | Weekday::Sun))
    }

    fn at(&self, date: NaiveDate, minute: u32) -> DateTime<FixedOffset> {
        let time = NaiveTime::from_num_seconds_from_midnight_opt(minute.min(1439) * 60, 0)
            .unwrap_or(NaiveTime::MIN);
        cst()
            .from_local_datetime(&date.and_time(time))
            .single()
            .unwrap_or_else(|| cst().from_utc_datetime(&date.and_time(time)))
    }

    /// The moment `minutes` of time (working or natural) after `start_ms` (UTC ms).
    pub fn add(&self, start_ms: i64, minutes: i64, clock: Clock) -> i64 {
        match clock {
            Clock::Natural => start_ms + minutes * 60_000,
            Clock::Working => self.add_working(start_ms, minutes),
        }
    }

    fn add_working(&self, start_ms: i64, minutes: i64) -> i64 {
        let per_day = self.working_minutes_per_day();
        if per_day <= 0 {
            return start_ms + minutes * 60_000;
        }
        let start = cst()
            .timestamp_millis_opt(start_ms)
            .single()
            .unwrap_or_else(|| cst().timestamp_millis_opt(0).single().expect("epoch"));
        let mut date = start.date_naive();
        // Where in the working day the clock starts (clamped into it).
        let minute_of_day = start.hour_minute();
        let mut offset_in_day: i64 =
            if !self.is_working_day(date) || minute_of_day >= self.day_end_min {
                date = self.next_working_day(date);
                0
            } else if minute_of_day < self.day_start_min {
                0
            } else {
                i64::from(minute_of_day - self.day_start_min)
            };
        // Seconds inside the starting minute keep their place.
        let extra_ms = if self.is_working_day(start.date_naive())
            && (self.day_start_min..self.day_end_min).contains(&minute_of_day)
        {
            i64::from(start.timestamp_subsec_millis()) + i64::from(start.second_of_minute()) * 1000
        } else {
            0
        };
        let mut left = minutes.max(0);
        loop {
            let room = per_day - offset_in_day;
            if left <= room {
                let minute = self.day_start_min as i64 + offset_in_day + left;
                return self.at(date, 0).timestamp_millis() + minute * 60_000 + extra_ms;
            }
            left -= room;
            date = self.next_working_day(date);
            offset_in_day = 0;
        }
    }

    /// Working minutes between two moments (0 when `to` is not after `from`): the time a
    /// clock has run, for one that is suspended and later resumed.
    pub fn working_minutes_between(&self, from_ms: i64, to_ms: i64) -> i64 {
        if to_ms <= from_ms {
            return 0;
        }
        let local = |ms: i64| {
            cst()
                .timestamp_millis_opt(ms)
                .single()
                .unwrap_or_else(|| cst().timestamp_millis_opt(0).single().expect("epoch"))
        };
        let (from, to) = (local(from_ms), local(to_ms));
        let mut date = from.date_naive();
        let mut total = 0;
        // Bounded: ten years of days at most.
        for _ in 0..3660 {
            if date > to.date_naive() {
                break;
            }
            if self.is_working_day(date) {
                let open = self.at(date, self.day_start_min).timestamp_millis();
                let close = self.at(date, self.day_end_min).timestamp_millis();
                let start = open.max(from_ms);
                let end = close.min(to_ms);
                if end > start {
                    total += (end - start) / 60_000;
                }
            }
            date += Duration::days(1);
        }
        total
    }

    fn next_working_day(&self, date: NaiveDate) -> NaiveDate {
        let mut next = date + Duration::days(1);
        // A year of holidays cannot hide every working day; the bound keeps a bad calendar
        // from looping forever.
        for _ in 0..366 {
            if self.is_working_day(next) {
                return next;
            }
            next += Duration::days(1);
        }
        next
    }

    /// Start of today (CST) in UTC ms, for "closed today".
    pub fn start_of_day_ms(now_ms: i64) -> i64 {
        let now = cst()
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_else(|| cst().timestamp_millis_opt(0).single().expect("epoch"));
        cst()
            .from_local_datetime(&now.date_naive().and_time(NaiveTime::MIN))
            .single()
            .map(|d| d.timestamp_millis())
            .unwrap_or(now_ms)
    }
}

trait MinuteOfDay {
    fn hour_minute(&self) -> u32;
    fn second_of_minute(&self) -> u32;
}

impl MinuteOfDay for DateTime<FixedOffset> {
    fn hour_minute(&self) -> u32 {
        use chrono::Timelike;
        self.hour() * 60 + self.minute()
    }
    fn second_of_minute(&self) -> u32 {
        use chrono::Timelike;
        self.second()
    }
}

/// RFC 3339 in China Standard Time, as Open311 clients show it.
pub fn to_cst_rfc3339(ms: i64) -> String {
    cst()
        .timestamp_millis_opt(ms)
        .single()
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("valid time")
            .timestamp_millis()
    }

    /// (from, to, working minutes between)
    #[test]
    fn clocks_measure_the_working_time_they_ran() {
        let calendar = WorkCalendar::default();
        for (from, to, minutes) in [
            (
                "2026-11-30T10:00:00+08:00",
                "2026-11-30T14:00:00+08:00",
                240,
            ),
            (
                "2026-11-30T15:00:00+08:00",
                "2026-12-01T11:00:00+08:00",
                240,
            ),
            (
                "2026-12-04T16:00:00+08:00",
                "2026-12-07T12:00:00+08:00",
                240,
            ),
            ("2026-12-05T09:00:00+08:00", "2026-12-06T18:00:00+08:00", 0),
            ("2026-11-30T20:00:00+08:00", "2026-11-30T08:00:00+08:00", 0),
        ] {
            assert_eq!(
                calendar.working_minutes_between(ms(from), ms(to)),
                minutes,
                "{from} → {to}"
            );
            if minutes > 0 {
                assert_eq!(calendar.add(ms(from), minutes, Clock::Working), ms(to));
            }
        }
    }

    /// (start, minutes, clock, expected due, calendar exceptions)
    #[test]
    fn deadlines_count_working_time() {
        let mut calendar = WorkCalendar::default();
        // 2026-10-01..07 National Day holiday; Sunday 2026-10-11 worked instead.
        for day in 1..=7 {
            calendar
                .exceptions
                .insert(NaiveDate::from_ymd_opt(2026, 10, day).expect("date"), false);
        }
        calendar
            .exceptions
            .insert(NaiveDate::from_ymd_opt(2026, 10, 11).expect("date"), true);
        let cases = [
            // Within one day.
            (
                "2026-11-30T10:00:00+08:00",
                240,
                Clock::Working,
                "2026-11-30T14:00:00+08:00",
            ),
            // Runs past 17:00 into the next morning.
            (
                "2026-11-30T15:00:00+08:00",
                240,
                Clock::Working,
                "2026-12-01T11:00:00+08:00",
            ),
            // Friday afternoon runs into Monday.
            (
                "2026-12-04T16:00:00+08:00",
                240,
                Clock::Working,
                "2026-12-07T12:00:00+08:00",
            ),
            // Reported at night: the clock starts next morning.
            (
                "2026-11-30T22:30:00+08:00",
                60,
                Clock::Working,
                "2026-12-01T10:00:00+08:00",
            ),
            // Reported on Saturday.
            (
                "2026-12-05T09:00:00+08:00",
                480,
                Clock::Working,
                "2026-12-07T17:00:00+08:00",
            ),
            // 20 working days across the National Day holiday and a worked Sunday:
            // Sep 28, 29, 30, Oct 8, 9, 11, 12..16 (5), 19..23 (5), 26, 27, 28, 29 → 29th 17:00.
            (
                "2026-09-28T09:00:00+08:00",
                20 * 480,
                Clock::Working,
                "2026-10-29T17:00:00+08:00",
            ),
            // Emergencies count every minute.
            (
                "2026-12-05T23:00:00+08:00",
                120,
                Clock::Natural,
                "2026-12-06T01:00:00+08:00",
            ),
            // Seconds survive.
            (
                "2026-11-30T10:00:30+08:00",
                30,
                Clock::Working,
                "2026-11-30T10:30:30+08:00",
            ),
        ];
        for (start, minutes, clock, due) in cases {
            assert_eq!(
                to_cst_rfc3339(calendar.add(ms(start), minutes, clock)),
                to_cst_rfc3339(ms(due)),
                "{start} + {minutes} min"
            );
        }
    }

    #[test]
    fn start_of_day_is_midnight_in_qingdao() {
        assert_eq!(
            WorkCalendar::start_of_day_ms(ms("2026-11-30T01:00:00+08:00")),
            ms("2026-11-30T00:00:00+08:00")
        );
        assert_eq!(
            WorkCalendar::start_of_day_ms(ms("2026-11-29T20:00:00Z")),
            ms("2026-11-30T00:00:00+08:00")
        );
    }
}
