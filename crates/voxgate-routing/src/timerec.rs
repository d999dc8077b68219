//! Time recurrences: the RFC 5545 (iCalendar RRULE) subset that OpenSIPS `drouting` and
//! `dialplan` use in their `timerec` column, evaluated in a time zone the rule states.
//!
//! Format (pipe separated, as in OpenSIPS 2.1, with the optional leading time zone of later
//! versions):
//!
//! ```text
//! [tz|]dtstart|duration|freq|until|interval|byday|bymonthday|byyearday|byweekno|bymonth
//! 20150101T080000|8H|WEEKLY|||MO,TU,WE,TH,FR
//! Europe/London|20241201T000000|P1D|YEARLY|||||||12
//! ```
//!
//! Trailing fields may be omitted; empty fields are unset. `dtstart` and `until` are local
//! times (`YYYYMMDDTHHMMSS`, `YYYYMMDD`, an optional trailing `Z` is accepted and ignored:
//! the rule's zone applies). `duration` is `P[nW][nD][T[nH][nM][nS]]` or the short form
//! `8H`, `30M`, `1D2H`. `byday` takes `MO`..`SU` optionally with an ordinal (`1MO`, `-1FR`),
//! counted in the month for `MONTHLY` (and for `YEARLY` with `bymonth`), in the year otherwise.
//! Negative `bymonthday`, `byyearday`, `byweekno` count from the end.
//!
//! Semantics: an occurrence starts on every qualifying day at the time of day of `dtstart`
//! and lasts `duration` (which may cross midnight). Without by-rules a day qualifies like
//! RFC 5545 expands the `freq` (weekly: the weekday of `dtstart`, monthly: its day of month,
//! yearly: its month and day); by-rules restrict the days; `interval` counts periods of `freq`
//! from `dtstart`. Without `freq` the rule is the single window `dtstart .. dtstart+duration`.
//! Everything is compared in local civil time of the zone, so "08:00-16:00 on weekdays"
//! follows daylight saving changes.
//!
//! Evaluation never allocates and costs one time-zone offset look-up plus a few integer
//! operations per day the duration spans.

use std::time::SystemTime;

use jiff::tz::TimeZone;

/// Error from parsing a time recurrence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timerec: {0}")]
pub struct TimeRecError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, TimeRecError> {
    Err(TimeRecError(msg.into()))
}

/// Recurrence frequency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freq {
    /// Every day (subject to by-rules and interval).
    Daily,
    /// Every week.
    Weekly,
    /// Every month.
    Monthly,
    /// Every year.
    Yearly,
}

/// Upper bound on a duration (a window longer than this is refused): one year.
pub const MAX_DURATION_SECS: i64 = 366 * 86_400;

/// A compiled time recurrence with its time zone.
#[derive(Debug, Clone)]
pub struct TimeRec {
    tz: TimeZone,
    tz_name: Box<str>,
    /// Local seconds since the local epoch (civil time as if UTC).
    dtstart: i64,
    duration: i64,
    freq: Option<Freq>,
    until: Option<i64>,
    interval: u32,
    /// Bit i = weekday i (0 = Monday) with any ordinal.
    byday_any: u8,
    /// Ordinal weekdays (ordinal, weekday 0=Mon).
    byday_nth: Vec<(i8, u8)>,
    bymonthday: Vec<i8>,
    byyearday: Vec<i16>,
    byweekno: Vec<i8>,
    /// Bit m = month m (1..12).
    bymonth: u16,
}

/// Civil date fields of a local day number.
#[derive(Debug, Clone, Copy)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm, re-derived).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> Civil {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil { year, month, day }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Weekday of a day number, 0 = Monday.
fn weekday(days: i64) -> u8 {
    (days + 3).rem_euclid(7) as u8
}

/// ISO week number and the number of ISO weeks in that ISO year.
fn iso_week(days: i64) -> (i64, i64) {
    let thursday = days - i64::from(weekday(days)) + 3;
    let c = civil_from_days(thursday);
    let week = (thursday - days_from_civil(c.year, 1, 1)) / 7 + 1;
    // Dec 28 is always in the last ISO week of its year.
    let dec28 = days_from_civil(c.year, 12, 28);
    let th28 = dec28 - i64::from(weekday(dec28)) + 3;
    let weeks = (th28 - days_from_civil(c.year, 1, 1)) / 7 + 1;
    (week, weeks)
}

fn parse_num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, TimeRecError> {
    s.trim()
        .parse()
        .map_err(|_| TimeRecError(format!("bad {what} {s:?}")))
}

/// Parses `YYYYMMDD[THHMMSS][Z]` into local seconds.
fn parse_datetime(s: &str) -> Result<i64, TimeRecError> {
    let s = s.trim();
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return err(format!("bad date {s:?}, want YYYYMMDD[THHMMSS]"));
    }
    let y: i64 = parse_num(&date[0..4], "year")?;
    let m: u32 = parse_num(&date[4..6], "month")?;
    let d: u32 = parse_num(&date[6..8], "day")?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return err(format!("bad date {s:?}"));
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(t) = time {
        if t.len() != 6 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return err(format!("bad time {s:?}, want HHMMSS"));
        }
        let h: i64 = parse_num(&t[0..2], "hour")?;
        let mi: i64 = parse_num(&t[2..4], "minute")?;
        let se: i64 = parse_num(&t[4..6], "second")?;
        if h > 23 || mi > 59 || se > 60 {
            return err(format!("bad time {s:?}"));
        }
        secs += h * 3600 + mi * 60 + se;
    }
    Ok(secs)
}

/// Parses an RFC 5545 duration (`P1DT2H`, `PT30M`, `P2W`) or the short form (`8H`, `1D2H`).
fn parse_duration(s: &str) -> Result<i64, TimeRecError> {
    let s = s.trim();
    let body = s.strip_prefix('P').unwrap_or(s);
    if body.is_empty() {
        return err(format!("bad duration {s:?}"));
    }
    let mut total: i64 = 0;
    let mut num: Option<i64> = None;
    for c in body.chars() {
        match c {
            '0'..='9' => {
                let d = i64::from(c as u8 - b'0');
                let n = num
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(d));
                match n {
                    Some(n) if n <= MAX_DURATION_SECS => num = Some(n),
                    _ => return err(format!("duration {s:?} too long")),
                }
            }
            'T' if num.is_none() => {}
            'W' | 'D' | 'H' | 'M' | 'S' => {
                let Some(n) = num.take() else {
                    return err(format!("bad duration {s:?}"));
                };
                let unit = match c {
                    'W' => 7 * 86_400,
                    'D' => 86_400,
                    'H' => 3600,
                    'M' => 60,
                    _ => 1,
                };
                total = total.saturating_add(n.saturating_mul(unit));
            }
            _ => return err(format!("bad duration {s:?}")),
        }
    }
    if num.is_some() || total <= 0 {
        return err(format!("bad duration {s:?}"));
    }
    if total > MAX_DURATION_SECS {
        return err(format!("duration {s:?} longer than a year"));
    }
    Ok(total)
}

fn parse_weekday(s: &str) -> Option<u8> {
    Some(match s {
        "MO" => 0,
        "TU" => 1,
        "WE" => 2,
        "TH" => 3,
        "FR" => 4,
        "SA" => 5,
        "SU" => 6,
        _ => return None,
    })
}

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

fn parse_signed_list<T>(s: &str, what: &str, max: i64) -> Result<Vec<T>, TimeRecError>
where
    T: TryFrom<i64>,
{
    let mut out = Vec::new();
    for p in list(s) {
        let v: i64 = parse_num(p, what)?;
        if v == 0 || v.abs() > max {
            return err(format!("{what} {v} out of range"));
        }
        out.push(T::try_from(v).map_err(|_| TimeRecError(format!("{what} {v} out of range")))?);
    }
    Ok(out)
}

/// Resolves a time-zone name with the bundled tz database (no system tzdata needed).
pub fn time_zone(name: &str) -> Result<TimeZone, TimeRecError> {
    if name.eq_ignore_ascii_case("UTC") || name == "Z" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| TimeRecError(format!("unknown time zone {name:?}")))
}

fn unix_secs(now: SystemTime) -> i64 {
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

impl TimeRec {
    /// Parses a `timerec` string. `default_tz` (an IANA name, e.g. `Europe/London`, or `UTC`)
    /// applies unless the string starts with a zone of its own.
    pub fn parse(s: &str, default_tz: &str) -> Result<TimeRec, TimeRecError> {
        let mut fields: Vec<&str> = s.trim().split('|').collect();
        let mut tz_name = default_tz.trim();
        if let Some(first) = fields.first()
            && first.contains(|c: char| c.is_ascii_alphabetic() && c != 'T' && c != 'Z')
        {
            tz_name = first.trim();
            fields.remove(0);
        }
        if fields.len() > 10 {
            return err(format!("too many fields in {s:?}"));
        }
        let tz = time_zone(tz_name)?;
        let f = |i: usize| fields.get(i).map(|v| v.trim()).unwrap_or("");
        if f(0).is_empty() {
            return err("dtstart is required");
        }
        let dtstart = parse_datetime(f(0))?;
        if f(1).is_empty() {
            return err("duration is required");
        }
        let duration = parse_duration(f(1))?;
        let freq = match f(2).to_ascii_uppercase().as_str() {
            "" => None,
            "DAILY" => Some(Freq::Daily),
            "WEEKLY" => Some(Freq::Weekly),
            "MONTHLY" => Some(Freq::Monthly),
            "YEARLY" => Some(Freq::Yearly),
            other => return err(format!("bad freq {other:?}")),
        };
        let until = if f(3).is_empty() {
            None
        } else {
            Some(parse_datetime(f(3))?)
        };
        let interval = if f(4).is_empty() {
            1
        } else {
            let i: u32 = parse_num(f(4), "interval")?;
            if i == 0 || i > 10_000 {
                return err("interval out of range");
            }
            i
        };
        let mut byday_any = 0u8;
        let mut byday_nth = Vec::new();
        for p in list(f(5)) {
            let up = p.to_ascii_uppercase();
            let split = up.len().saturating_sub(2);
            let (Some(ord), Some(wd)) = (up.get(..split), up.get(split..)) else {
                return err(format!("bad byday {p:?}"));
            };
            let Some(wd) = parse_weekday(wd) else {
                return err(format!("bad byday {p:?}"));
            };
            if ord.is_empty() || ord == "+" {
                byday_any |= 1 << wd;
            } else {
                let n: i8 = parse_num(ord, "byday ordinal")?;
                if n == 0 || n.abs() > 53 {
                    return err(format!("bad byday {p:?}"));
                }
                byday_nth.push((n, wd));
            }
        }
        let bymonthday = parse_signed_list(f(6), "bymonthday", 31)?;
        let byyearday = parse_signed_list(f(7), "byyearday", 366)?;
        let byweekno = parse_signed_list(f(8), "byweekno", 53)?;
        let mut bymonth = 0u16;
        for m in parse_signed_list::<i8>(f(9), "bymonth", 12)? {
            if m < 0 {
                return err("bymonth must be positive");
            }
            bymonth |= 1 << m;
        }
        if freq.is_none()
            && (byday_any != 0
                || !byday_nth.is_empty()
                || !bymonthday.is_empty()
                || !byyearday.is_empty()
                || !byweekno.is_empty()
                || bymonth != 0)
        {
            return err("by-rules need a freq");
        }
        Ok(TimeRec {
            tz,
            tz_name: tz_name.into(),
            dtstart,
            duration,
            freq,
            until,
            interval,
            byday_any,
            byday_nth,
            bymonthday,
            byyearday,
            byweekno,
            bymonth,
        })
    }

    /// The time zone the recurrence is evaluated in.
    pub fn time_zone_name(&self) -> &str {
        &self.tz_name
    }

    /// Whether `now` falls inside an occurrence.
    pub fn matches(&self, now: SystemTime) -> bool {
        self.matches_unix(unix_secs(now))
    }

    /// Whether the UNIX time `utc_secs` falls inside an occurrence.
    pub fn matches_unix(&self, utc_secs: i64) -> bool {
        let offset = match jiff::Timestamp::from_second(utc_secs) {
            Ok(ts) => i64::from(self.tz.to_offset(ts).seconds()),
            Err(_) => return false,
        };
        self.matches_local(utc_secs.saturating_add(offset))
    }

    fn matches_local(&self, t: i64) -> bool {
        if t < self.dtstart {
            return false;
        }
        if let Some(u) = self.until
            && t > u
        {
            return false;
        }
        let Some(freq) = self.freq else {
            return t < self.dtstart + self.duration;
        };
        let start_tod = self.dtstart.rem_euclid(86_400);
        let start_day = self.dtstart.div_euclid(86_400);
        let today = t.div_euclid(86_400);
        // The latest day whose occurrence could still cover t.
        let first = if t.rem_euclid(86_400) >= start_tod {
            today
        } else {
            today - 1
        };
        let span_days = (self.duration + 86_399) / 86_400;
        let mut day = first;
        while day >= start_day && day > first - span_days - 1 {
            let occ = day * 86_400 + start_tod;
            if t >= occ && t < occ + self.duration && self.day_qualifies(freq, day, start_day) {
                return true;
            }
            day -= 1;
        }
        false
    }

    fn day_qualifies(&self, freq: Freq, day: i64, start_day: i64) -> bool {
        let c = civil_from_days(day);
        let s = civil_from_days(start_day);
        let interval = i64::from(self.interval);
        let period_ok = match freq {
            Freq::Daily => (day - start_day) % interval == 0,
            Freq::Weekly => {
                let wk = (day - i64::from(weekday(day))).div_euclid(7);
                let swk = (start_day - i64::from(weekday(start_day))).div_euclid(7);
                (wk - swk) % interval == 0
            }
            Freq::Monthly => {
                ((c.year * 12 + i64::from(c.month)) - (s.year * 12 + i64::from(s.month))) % interval
                    == 0
            }
            Freq::Yearly => (c.year - s.year) % interval == 0,
        };
        if !period_ok {
            return false;
        }
        let has_by = self.byday_any != 0
            || !self.byday_nth.is_empty()
            || !self.bymonthday.is_empty()
            || !self.byyearday.is_empty()
            || !self.byweekno.is_empty()
            || self.bymonth != 0;
        if !has_by {
            return match freq {
                Freq::Daily => true,
                Freq::Weekly => weekday(day) == weekday(start_day),
                Freq::Monthly => c.day == s.day,
                Freq::Yearly => c.day == s.day && c.month == s.month,
            };
        }
        if self.bymonth != 0 && self.bymonth & (1 << c.month) == 0 {
            return false;
        }
        if !self.byweekno.is_empty() {
            let (w, weeks) = iso_week(day);
            if !self.byweekno.iter().any(|&n| {
                if n > 0 {
                    i64::from(n) == w
                } else {
                    weeks + 1 + i64::from(n) == w
                }
            }) {
                return false;
            }
        }
        if !self.byyearday.is_empty() {
            let doy = day - days_from_civil(c.year, 1, 1) + 1;
            let ylen = if is_leap(c.year) { 366 } else { 365 };
            if !self.byyearday.iter().any(|&n| {
                if n > 0 {
                    i64::from(n) == doy
                } else {
                    ylen + 1 + i64::from(n) == doy
                }
            }) {
                return false;
            }
        }
        if !self.bymonthday.is_empty() {
            let mlen = i64::from(days_in_month(c.year, c.month));
            let dom = i64::from(c.day);
            if !self.bymonthday.iter().any(|&n| {
                if n > 0 {
                    i64::from(n) == dom
                } else {
                    mlen + 1 + i64::from(n) == dom
                }
            }) {
                return false;
            }
        }
        // Days with no byday restriction pass; with it, any plain or ordinal entry may match.
        if self.byday_any != 0 || !self.byday_nth.is_empty() {
            let wd = weekday(day);
            let plain = self.byday_any & (1 << wd) != 0;
            let nth = !plain
                && self.byday_nth.iter().any(|&(n, w)| {
                    if w != wd {
                        return false;
                    }
                    // Ordinals count within the month for MONTHLY (or YEARLY with bymonth),
                    // within the year otherwise.
                    let in_month = freq == Freq::Monthly || self.bymonth != 0;
                    let (first, len) = if in_month {
                        (
                            days_from_civil(c.year, c.month, 1),
                            i64::from(days_in_month(c.year, c.month)),
                        )
                    } else {
                        (
                            days_from_civil(c.year, 1, 1),
                            if is_leap(c.year) { 366 } else { 365 },
                        )
                    };
                    let idx = day - first; // 0-based position in the span
                    if n > 0 {
                        idx / 7 + 1 == i64::from(n)
                    } else {
                        (len - 1 - idx) / 7 + 1 == -i64::from(n)
                    }
                });
            if !plain && !nth {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i64, m: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60
    }

    #[test]
    fn civil_roundtrip() {
        for z in [-800_000i64, -1, 0, 1, 59, 60, 11_016, 19_723, 800_000] {
            let c = civil_from_days(z);
            assert_eq!(days_from_civil(c.year, c.month, c.day), z);
        }
        assert_eq!(weekday(0), 3); // 1970-01-01 was a Thursday
        assert_eq!(iso_week(days_from_civil(2021, 1, 3)), (53, 53));
        assert_eq!(iso_week(days_from_civil(2024, 12, 30)).0, 1);
    }

    #[test]
    fn weekday_office_hours() {
        let r = TimeRec::parse("20150101T080000|8H|WEEKLY|||MO,TU,WE,TH,FR", "UTC").unwrap();
        // 2024-06-03 is a Monday
        assert!(r.matches_unix(utc(2024, 6, 3, 8, 0)));
        assert!(r.matches_unix(utc(2024, 6, 3, 15, 59)));
        assert!(!r.matches_unix(utc(2024, 6, 3, 16, 0)));
        assert!(!r.matches_unix(utc(2024, 6, 3, 7, 59)));
        assert!(!r.matches_unix(utc(2024, 6, 8, 10, 0))); // Saturday
        assert!(!r.matches_unix(utc(2014, 6, 2, 10, 0))); // before dtstart
    }

    #[test]
    fn time_zone_and_dst() {
        let r = TimeRec::parse(
            "Europe/London|20200101T090000|PT1H|DAILY",
            "UTC", // overridden
        )
        .unwrap();
        assert_eq!(r.time_zone_name(), "Europe/London");
        // Winter: 09:00 London = 09:00 UTC; summer: 09:00 BST = 08:00 UTC.
        assert!(r.matches_unix(utc(2024, 1, 10, 9, 30)));
        assert!(r.matches_unix(utc(2024, 7, 10, 8, 30)));
        assert!(!r.matches_unix(utc(2024, 7, 10, 9, 30)));
    }

    #[test]
    fn crosses_midnight() {
        let r = TimeRec::parse("20200101T220000|10H|DAILY", "UTC").unwrap();
        assert!(r.matches_unix(utc(2024, 3, 5, 23, 0)));
        assert!(r.matches_unix(utc(2024, 3, 6, 7, 59)));
        assert!(!r.matches_unix(utc(2024, 3, 6, 8, 0)));
        assert!(!r.matches_unix(utc(2024, 3, 6, 21, 59)));
    }

    #[test]
    fn single_window_and_until() {
        let r = TimeRec::parse("20241224T000000|P3D", "UTC").unwrap();
        assert!(r.matches_unix(utc(2024, 12, 26, 23, 0)));
        assert!(!r.matches_unix(utc(2024, 12, 27, 0, 0)));
        let u = TimeRec::parse("20240101T000000|P1D|DAILY|20240110T000000", "UTC").unwrap();
        assert!(u.matches_unix(utc(2024, 1, 9, 12, 0)));
        assert!(!u.matches_unix(utc(2024, 1, 11, 12, 0)));
    }

    #[test]
    fn interval_and_defaults() {
        // every 2 weeks on the weekday of dtstart (Monday 2024-01-01)
        let r = TimeRec::parse("20240101T000000|P1D|WEEKLY||2", "UTC").unwrap();
        assert!(r.matches_unix(utc(2024, 1, 1, 5, 0)));
        assert!(!r.matches_unix(utc(2024, 1, 8, 5, 0)));
        assert!(r.matches_unix(utc(2024, 1, 15, 5, 0)));
        assert!(!r.matches_unix(utc(2024, 1, 16, 5, 0)));
        // monthly on the 15th
        let m = TimeRec::parse("20240115T000000|P1D|MONTHLY", "UTC").unwrap();
        assert!(m.matches_unix(utc(2024, 5, 15, 1, 0)));
        assert!(!m.matches_unix(utc(2024, 5, 16, 1, 0)));
        // yearly Christmas
        let y = TimeRec::parse("20001225T000000|P1D|YEARLY", "UTC").unwrap();
        assert!(y.matches_unix(utc(2031, 12, 25, 13, 0)));
        assert!(!y.matches_unix(utc(2031, 11, 25, 13, 0)));
    }

    #[test]
    fn by_rules() {
        // last Friday of each month
        let r = TimeRec::parse("20240101T000000|P1D|MONTHLY|||-1FR", "UTC").unwrap();
        assert!(r.matches_unix(utc(2024, 5, 31, 12, 0)));
        assert!(!r.matches_unix(utc(2024, 5, 24, 12, 0)));
        // first Monday
        let f = TimeRec::parse("20240101T000000|P1D|MONTHLY|||1MO", "UTC").unwrap();
        assert!(f.matches_unix(utc(2024, 6, 3, 12, 0)));
        assert!(!f.matches_unix(utc(2024, 6, 10, 12, 0)));
        // last day of the month
        let l = TimeRec::parse("20240101T000000|P1D|MONTHLY||||-1", "UTC").unwrap();
        assert!(l.matches_unix(utc(2024, 2, 29, 12, 0)));
        assert!(!l.matches_unix(utc(2024, 2, 28, 12, 0)));
        // December only, year day 1 and week 1
        let d = TimeRec::parse("20240101T000000|P1D|YEARLY|||||||12", "UTC").unwrap();
        assert!(d.matches_unix(utc(2025, 12, 3, 0, 0)));
        assert!(!d.matches_unix(utc(2025, 11, 3, 0, 0)));
        let yd = TimeRec::parse("20240101T000000|P1D|YEARLY|||||1,-1", "UTC").unwrap();
        assert!(yd.matches_unix(utc(2025, 12, 31, 9, 0)));
        assert!(yd.matches_unix(utc(2025, 1, 1, 9, 0)));
        assert!(!yd.matches_unix(utc(2025, 1, 2, 9, 0)));
        let wk = TimeRec::parse("20240101T000000|P1D|YEARLY||||||1", "UTC");
        assert!(wk.is_ok());
        let w1 = TimeRec::parse("20240101T000000|P1D|YEARLY||||||1", "UTC").unwrap();
        assert!(w1.matches_unix(utc(2024, 12, 31, 9, 0))); // ISO week 1 of 2025
        assert!(!w1.matches_unix(utc(2024, 12, 20, 9, 0)));
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in [
            "",
            "2024|1H",
            "20241301T000000|1H",
            "20240101T250000|1H",
            "20240101T000000",
            "20240101T000000|H",
            "20240101T000000|99999999D",
            "20240101T000000|1H|HOURLY",
            "20240101T000000|1H|DAILY||0",
            "20240101T000000|1H|DAILY|||XX",
            "20240101T000000|1H|DAILY||||32",
            "20240101T000000|1H|||||MO",
            "Mars/Olympus|20240101T000000|1H",
            "20240101T000000|1H|DAILY|||||||13",
        ] {
            assert!(TimeRec::parse(bad, "UTC").is_err(), "{bad:?} accepted");
        }
        assert!(TimeRec::parse("20240101T000000|1H", "Nowhere/Land").is_err());
    }

    #[test]
    fn agrees_with_closed_forms() {
        // DAILY/WEEKLY without by-rules in UTC have closed forms: inside iff the time since
        // dtstart modulo the period is below the duration.
        let mut rng = crate::common::SplitMix::new(99);
        let base = utc(2020, 3, 1, 0, 0);
        for _ in 0..300 {
            let start = base + rng.below(400 * 86_400) as i64;
            let (freq, period) = if rng.below(2) == 0 {
                ("DAILY", 86_400)
            } else {
                ("WEEKLY", 7 * 86_400)
            };
            let dur = 60 + rng.below(period as u64 - 60) as i64;
            let c = civil_from_days(start.div_euclid(86_400));
            let tod = start.rem_euclid(86_400);
            let spec = format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}|{}S|{}",
                c.year,
                c.month,
                c.day,
                tod / 3600,
                tod / 60 % 60,
                tod % 60,
                dur,
                freq
            );
            let r = TimeRec::parse(&spec, "UTC").unwrap();
            for _ in 0..50 {
                let t = start - 86_400 + rng.below(800 * 86_400) as i64;
                let want = t >= start && (t - start).rem_euclid(period) < dur;
                assert_eq!(r.matches_unix(t), want, "{spec} at {t}");
            }
        }
    }

    #[test]
    fn system_time_entry_point() {
        let r = TimeRec::parse("19700101T000000|1D", "UTC").unwrap();
        assert!(r.matches(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(3600)));
    }
}
