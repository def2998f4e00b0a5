//! Time windows in a time zone, e.g. weekdays 08:00–18:00 Europe/Berlin.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Timelike, Weekday};
use serde::{Deserialize, Serialize};

use crate::{DomainError, Timestamp};

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn matches(self, weekday: Weekday) -> bool {
        let d = match weekday {
            Weekday::Mon => Day::Mon,
            Weekday::Tue => Day::Tue,
            Weekday::Wed => Day::Wed,
            Weekday::Thu => Day::Thu,
            Weekday::Fri => Day::Fri,
            Weekday::Sat => Day::Sat,
            Weekday::Sun => Day::Sun,
        };
        d == self
    }
}

/// A wall-clock time of day, `HH:MM`, from `00:00` to `24:00`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "08:00")]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        let invalid = || {
            DomainError::invalid(
                "schedule.windows",
                format!("`{s}` is not a time `HH:MM` from 00:00 to 24:00"),
            )
        };
        let (h, m) = s.split_once(':').ok_or_else(invalid)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(invalid());
        }
        let h: u16 = h.parse().map_err(|_| invalid())?;
        let m: u16 = m.parse().map_err(|_| invalid())?;
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return Err(invalid());
        }
        Ok(Self(h * 60 + m))
    }
}

impl FromStr for TimeOfDay {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::try_from(s.to_owned())
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> String {
        t.to_string()
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// One recurring window. When `end` is not after `start` the window runs past midnight into the
/// next day (e.g. 22:00–02:00), and belongs to the day it starts on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The days the window starts on.
    pub days: Vec<Day>,
    /// Start, inclusive.
    pub start: TimeOfDay,
    /// End, exclusive.
    pub end: TimeOfDay,
}

/// When a grant may be used: any of its windows, in its time zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// The windows; at least one.
    pub windows: Vec<Window>,
}

impl Schedule {
    /// Checks the time zone and that every window is well formed.
    pub fn validate(&self) -> Result<(), DomainError> {
        self.tz()?;
        if self.windows.is_empty() {
            return Err(DomainError::invalid(
                "schedule.windows",
                "at least one window is required",
            ));
        }
        for w in &self.windows {
            if w.days.is_empty() {
                return Err(DomainError::invalid(
                    "schedule.windows",
                    "a window needs at least one day",
                ));
            }
            if w.start == w.end {
                return Err(DomainError::invalid(
                    "schedule.windows",
                    "a window's start and end must differ",
                ));
            }
        }
        Ok(())
    }

    fn tz(&self) -> Result<chrono_tz::Tz, DomainError> {
        self.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            DomainError::invalid(
                "schedule.timezone",
                format!("`{}` is not an IANA time zone", self.timezone),
            )
        })
    }

    /// Whether `at` falls inside one of the windows. An unparseable time zone contains nothing
    /// (fail closed).
    pub fn contains(&self, at: Timestamp) -> bool {
        let Ok(tz) = self.tz() else { return false };
        let local = at.with_timezone(&tz);
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let today = local.weekday();
        let yesterday = today.pred();
        self.windows.iter().any(|w| {
            let (start, end) = (w.start.minutes(), w.end.minutes());
            if start < end {
                w.days.iter().any(|d| d.matches(today)) && minute >= start && minute < end
            } else {
                (w.days.iter().any(|d| d.matches(today)) && minute >= start)
                    || (w.days.iter().any(|d| d.matches(yesterday)) && minute < end)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap_or_default()
    }

    fn sched(tz: &str, days: Vec<Day>, start: &str, end: &str) -> Schedule {
        Schedule {
            timezone: tz.into(),
            windows: vec![Window {
                days,
                start: start.parse().unwrap_or(TimeOfDay(0)),
                end: end.parse().unwrap_or(TimeOfDay(0)),
            }],
        }
    }

    #[test]
    fn business_hours_in_berlin() {
        let s = sched(
            "Europe/Berlin",
            vec![Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri],
            "08:00",
            "18:00",
        );
        assert!(s.validate().is_ok());
        // Wednesday 2026-01-07 07:30 UTC is 08:30 in Berlin (CET, UTC+1).
        assert!(s.contains(at("2026-01-07T07:30:00Z")));
        // 06:59 UTC is 07:59 Berlin: before the window.
        assert!(!s.contains(at("2026-01-07T06:59:00Z")));
        // 17:00 UTC is 18:00 Berlin: end is exclusive.
        assert!(!s.contains(at("2026-01-07T17:00:00Z")));
        // Summer time (CEST, UTC+2): 06:30 UTC is 08:30 Berlin.
        assert!(s.contains(at("2026-07-08T06:30:00Z")));
        // Saturday.
        assert!(!s.contains(at("2026-01-10T10:00:00Z")));
    }

    #[test]
    fn overnight_window_belongs_to_its_start_day() {
        let s = sched("UTC", vec![Day::Fri], "22:00", "02:00");
        assert!(s.contains(at("2026-01-09T23:00:00Z"))); // Friday night
        assert!(s.contains(at("2026-01-10T01:00:00Z"))); // early Saturday
        assert!(!s.contains(at("2026-01-10T23:00:00Z"))); // Saturday night
        assert!(!s.contains(at("2026-01-09T01:00:00Z"))); // early Friday
    }

    #[test]
    fn bad_schedules_are_rejected() {
        assert!(sched("Mars/Olympus", vec![Day::Mon], "08:00", "09:00")
            .validate()
            .is_err());
        assert!(sched("UTC", vec![], "08:00", "09:00").validate().is_err());
        assert!("25:00".parse::<TimeOfDay>().is_err());
        assert!("8:00".parse::<TimeOfDay>().is_err());
        assert!("24:00".parse::<TimeOfDay>().is_ok());
        let unknown_tz = Schedule {
            timezone: "Nowhere".into(),
            windows: vec![],
        };
        assert!(!unknown_tz.contains(at("2026-01-07T07:30:00Z")));
    }
}
