//! Schedules: days of the week and time ranges, in the gateway's time zone.
//!
//! A schedule is evaluated on wall-clock time, because that is how admins write them ("school
//! hours", "after 21:00"): on a DST change day an `08:00-17:30` range still starts when the clocks
//! show 08:00. The pipeline passes packet timestamps (µs since the UNIX epoch) through a [`Clock`],
//! so evaluation is pure and tests use fixed zones and explicit instants.
//!
//! An overnight range such as `21:00-07:00` belongs to the day it starts on: with `days = ["fri"]`
//! it is active from Friday 21:00 until Saturday 07:00, and not on Friday before 07:00.

use jiff::tz::TimeZone;
use serde::Deserialize;
use std::fmt;

const DAY_MINUTES: u16 = 24 * 60;
const WEEK_MINUTES: usize = 7 * DAY_MINUTES as usize;
const WORDS: usize = WEEK_MINUTES.div_ceil(64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("\"{0}\" is not a day (mon..sun, a range like \"mon-fri\", \"weekdays\", \"weekend\", \"daily\")")]
    BadDay(String),
    #[error("\"{0}\" is not a time (HH:MM, 00:00-24:00)")]
    BadTime(String),
    #[error("\"{0}\" is not a time range (HH:MM-HH:MM, e.g. \"08:00-17:30\" or \"21:00-07:00\")")]
    BadRange(String),
    #[error("time range \"{0}\" starts at 24:00; use 00:00")]
    StartsAtMidnightEnd(String),
    #[error("time range \"{0}\" is empty (start equals end); use \"00:00-24:00\" for the whole day")]
    EmptyRange(String),
}

/// A moment in local wall-clock time, at minute resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 = Monday .. 6 = Sunday.
    pub weekday: u8,
    /// Minute of the day, 0..1440.
    pub minute: u16,
}

/// A parsed schedule, compiled to one bit per minute of the week (1260 bytes) so that
/// [`Schedule::is_active`] is a single bit test whatever the number of ranges.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ScheduleConfig")]
pub struct Schedule {
    /// Bit d = weekday d (0 = Monday), as listed.
    days: u8,
    /// (start, end) minutes; end <= start means overnight.
    ranges: Vec<(u16, u16)>,
    week: Box<[u64; WORDS]>,
}

/// `{ days = [...], times = [...] }` as written in the config; either key may be omitted, and
/// `days = "weekdays"` is accepted for a single value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleConfig {
    #[serde(default)]
    days: StringOrList,
    #[serde(default)]
    times: StringOrList,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl Default for StringOrList {
    fn default() -> Self {
        StringOrList::Many(Vec::new())
    }
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

impl TryFrom<ScheduleConfig> for Schedule {
    type Error = ScheduleError;
    fn try_from(c: ScheduleConfig) -> Result<Schedule, ScheduleError> {
        Schedule::parse(&c.days.into_vec(), &c.times.into_vec())
    }
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_LONG: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

fn day_index(s: &str) -> Option<u8> {
    let s = s.trim();
    (0..7u8).find(|&i| s.eq_ignore_ascii_case(DAY_NAMES[i as usize]) || s.eq_ignore_ascii_case(DAY_LONG[i as usize]))
}

/// One `days` entry as a bitmask. A range wraps around the week end (`fri-mon` is Fri, Sat, Sun, Mon).
fn parse_days(s: &str) -> Result<u8, ScheduleError> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "daily" | "all" => return Ok(0x7f),
        "weekdays" => return Ok(0x1f),
        "weekend" => return Ok(0x60),
        _ => {}
    }
    let bad = || ScheduleError::BadDay(s.to_string());
    if let Some(d) = day_index(&t) {
        return Ok(1 << d);
    }
    let (a, b) = t.split_once('-').ok_or_else(bad)?;
    let (a, b) = (day_index(a).ok_or_else(bad)?, day_index(b).ok_or_else(bad)?);
    let mut mask = 0u8;
    let mut d = a;
    loop {
        mask |= 1 << d;
        if d == b {
            return Ok(mask);
        }
        d = (d + 1) % 7;
    }
}

/// `HH:MM` (or `H:MM`) as minutes of the day, 0..=1440.
fn parse_time(s: &str) -> Result<u16, ScheduleError> {
    let t = s.trim();
    let bad = || ScheduleError::BadTime(t.to_string());
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn parse_range(s: &str) -> Result<(u16, u16), ScheduleError> {
    let t = s.trim();
    let (a, b) = t.split_once('-').ok_or_else(|| ScheduleError::BadRange(t.to_string()))?;
    let (start, end) = (parse_time(a)?, parse_time(b)?);
    if start == DAY_MINUTES {
        return Err(ScheduleError::StartsAtMidnightEnd(t.to_string()));
    }
    if start == end {
        return Err(ScheduleError::EmptyRange(t.to_string()));
    }
    Ok((start, end))
}

impl Schedule {
    /// Parses `days` (empty = every day) and `times` (empty = all day).
    pub fn parse(days: &[String], times: &[String]) -> Result<Schedule, ScheduleError> {
        let mut mask = 0u8;
        for d in days {
            mask |= parse_days(d)?;
        }
        if days.is_empty() {
            mask = 0x7f;
        }
        let mut ranges = Vec::with_capacity(times.len().max(1));
        for t in times {
            ranges.push(parse_range(t)?);
        }
        if times.is_empty() {
            ranges.push((0, DAY_MINUTES));
        }
        let mut week = Box::new([0u64; WORDS]);
        let mut set = |day: u8, from: u16, to: u16| {
            for m in from..to {
                let bit = day as usize * DAY_MINUTES as usize + m as usize;
                week[bit / 64] |= 1 << (bit % 64);
            }
        };
        for day in (0..7u8).filter(|d| mask & (1 << d) != 0) {
            for &(start, end) in &ranges {
                if start < end {
                    set(day, start, end);
                } else {
                    // Overnight: the part after midnight belongs to the next day (Sunday's to Monday).
                    set(day, start, DAY_MINUTES);
                    set((day + 1) % 7, 0, end);
                }
            }
        }
        Ok(Schedule { days: mask, ranges, week })
    }

    /// Whether the schedule covers this local minute. Out-of-range fields are never active.
    pub fn is_active(&self, at: LocalTime) -> bool {
        if at.weekday > 6 || at.minute >= DAY_MINUTES {
            return false;
        }
        let bit = at.weekday as usize * DAY_MINUTES as usize + at.minute as usize;
        self.week[bit / 64] & (1 << (bit % 64)) != 0
    }
}

/// Shows the schedule as written, normalized: `mon,tue,wed,thu,fri 08:00-17:30`.
impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = (0..7).filter(|d| self.days & (1 << d) != 0).map(|d| DAY_NAMES[d]).collect();
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let ranges: Vec<String> = self.ranges.iter().map(|&(a, b)| format!("{}-{}", hm(a), hm(b))).collect();
        write!(f, "{} {}", days.join(","), ranges.join(","))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("cannot determine the system time zone (TZ, /etc/localtime): {0}; schedules use UTC")]
    NoSystemZone(String),
    #[error("unknown time zone \"{name}\" (an IANA name like \"Europe/Rome\" or a POSIX TZ string): {reason}")]
    UnknownZone { name: String, reason: String },
}

/// Converts packet timestamps to local wall-clock time for schedules.
#[derive(Debug, Clone)]
pub struct Clock {
    tz: TimeZone,
}

/// Largest instant jiff represents (9999-12-30 UTC, with margin): later timestamps are clamped
/// instead of failing, since a timestamp from a broken clock must not stop the pipeline.
const MAX_SECS: i64 = 253_402_000_000;

impl Clock {
    /// The gateway's zone, from `TZ` or `/etc/localtime`. Always returns a usable clock; when the
    /// zone cannot be determined it is UTC and the error says why, for a startup warning.
    pub fn system() -> (Clock, Option<ClockError>) {
        match TimeZone::try_system() {
            Ok(tz) => (Clock { tz }, None),
            Err(e) => (Clock::utc(), Some(ClockError::NoSystemZone(e.to_string()))),
        }
    }

    /// A named zone: an IANA name from the system's zoneinfo (`"Europe/Rome"`), or a POSIX TZ string
    /// (`"CET-1CEST,M3.5.0,M10.5.0/3"`) for gateways without zoneinfo.
    pub fn fixed(tz_name: &str) -> Result<Clock, ClockError> {
        let name = tz_name.trim();
        match TimeZone::get(name) {
            Ok(tz) => Ok(Clock { tz }),
            Err(e) => match TimeZone::posix(name) {
                // A POSIX string needs an offset; a bare word like "Europe/Nowhere" is refused here too.
                Ok(tz) if name.bytes().any(|b| b.is_ascii_digit()) => Ok(Clock { tz }),
                _ => Err(ClockError::UnknownZone { name: name.to_string(), reason: e.to_string() }),
            },
        }
    }

    pub fn utc() -> Clock {
        Clock { tz: TimeZone::UTC }
    }

    /// The zone's IANA name when it has one, for logs.
    pub fn zone_name(&self) -> Option<&str> {
        self.tz.iana_name()
    }

    /// Local weekday and minute at `unix_micros` (µs since the UNIX epoch).
    pub fn local(&self, unix_micros: u64) -> LocalTime {
        let secs = (unix_micros / 1_000_000).min(MAX_SECS as u64) as i64;
        let offset = jiff::Timestamp::from_second(secs).map(|ts| self.tz.to_offset(ts).seconds()).unwrap_or(0);
        let local = secs + i64::from(offset);
        let days = local.div_euclid(86_400);
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        let weekday = (days + 3).rem_euclid(7) as u8;
        LocalTime { weekday, minute }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(days: &[&str], times: &[&str]) -> Schedule {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Schedule::parse(&s(days), &s(times)).unwrap()
    }

    fn err(days: &[&str], times: &[&str]) -> String {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Schedule::parse(&s(days), &s(times)).unwrap_err().to_string()
    }

    const MON: u8 = 0;
    const FRI: u8 = 4;
    const SAT: u8 = 5;
    const SUN: u8 = 6;

    fn at(weekday: u8, hh: u16, mm: u16) -> LocalTime {
        LocalTime { weekday, minute: hh * 60 + mm }
    }

    /// µs since the epoch of a UTC civil time: explicit instants, independent of the zone under test.
    fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8, s: i8) -> u64 {
        let ts = TimeZone::UTC.to_timestamp(jiff::civil::date(y, mo, d).at(h, mi, s, 0)).unwrap();
        ts.as_microsecond() as u64
    }

    /// Europe/Rome from the system's zoneinfo, or its POSIX rule where zoneinfo is missing.
    fn rome() -> Clock {
        Clock::fixed("Europe/Rome").unwrap_or_else(|e| {
            eprintln!("{e}; using the equivalent POSIX rule");
            Clock::fixed("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
        })
    }

    #[test]
    fn day_names_and_ranges() {
        let days = |d: &[&str]| sched(d, &[]).days;
        assert_eq!(days(&["mon"]), 0b000_0001);
        assert_eq!(days(&["Sunday"]), 0b100_0000);
        assert_eq!(days(&["mon-fri"]), 0b001_1111);
        assert_eq!(days(&["weekdays"]), 0b001_1111);
        assert_eq!(days(&["weekend"]), 0b110_0000);
        assert_eq!(days(&["sat", "SUN"]), 0b110_0000);
        assert_eq!(days(&["daily"]), 0x7f);
        assert_eq!(days(&["all"]), 0x7f);
        assert_eq!(days(&[]), 0x7f);
        // A range wraps around the end of the week.
        assert_eq!(days(&["fri-mon"]), 0b111_0001);
        assert_eq!(days(&["tue - thu"]), 0b000_1110);
    }

    #[test]
    fn start_inclusive_end_exclusive() {
        let s = sched(&["mon-fri"], &["08:00-17:30"]);
        assert!(!s.is_active(at(MON, 7, 59)));
        assert!(s.is_active(at(MON, 8, 0)));
        assert!(s.is_active(at(FRI, 17, 29)));
        assert!(!s.is_active(at(FRI, 17, 30)));
        assert!(!s.is_active(at(SAT, 12, 0)));
        // Out-of-range input is never active and never panics.
        assert!(!s.is_active(LocalTime { weekday: 7, minute: 600 }));
        assert!(!s.is_active(LocalTime { weekday: 0, minute: 1440 }));
        assert!(!sched(&[], &[]).is_active(LocalTime { weekday: 255, minute: u16::MAX }));
    }

    #[test]
    fn empty_times_and_whole_day() {
        for s in [sched(&["sat"], &[]), sched(&["sat"], &["00:00-24:00"])] {
            assert!(!s.is_active(at(FRI, 23, 59)));
            assert!(s.is_active(at(SAT, 0, 0)));
            assert!(s.is_active(at(SAT, 23, 59)));
            assert!(!s.is_active(at(SUN, 0, 0)));
        }
        let every = sched(&[], &[]);
        assert!((0..7).all(|d| (0..1440).all(|m| every.is_active(LocalTime { weekday: d, minute: m }))));
    }

    #[test]
    fn overnight_belongs_to_the_listed_day() {
        let s = sched(&["fri"], &["21:00-07:00"]);
        assert!(!s.is_active(at(FRI, 6, 0)), "Friday morning belongs to Thursday's night");
        assert!(!s.is_active(at(FRI, 20, 59)));
        assert!(s.is_active(at(FRI, 21, 0)));
        assert!(s.is_active(at(FRI, 23, 59)));
        assert!(s.is_active(at(SAT, 0, 0)));
        assert!(s.is_active(at(SAT, 6, 59)));
        assert!(!s.is_active(at(SAT, 7, 0)));
        assert!(!s.is_active(at(SAT, 21, 0)));
        // Sunday night runs into Monday morning.
        let s = sched(&["sun"], &["22:00-02:00"]);
        assert!(s.is_active(at(SUN, 22, 0)) && s.is_active(at(MON, 1, 59)));
        assert!(!s.is_active(at(MON, 2, 0)) && !s.is_active(at(SUN, 1, 0)));
        // An end at 00:00 is midnight: nothing after it.
        let s = sched(&["mon"], &["22:00-00:00"]);
        assert!(s.is_active(at(MON, 23, 59)) && !s.is_active(at(1, 0, 0)));
    }

    #[test]
    fn several_ranges() {
        let s = sched(&["weekdays"], &["07:00-08:00", "12:00-13:00", "22:00-01:00"]);
        assert!(s.is_active(at(MON, 7, 30)) && s.is_active(at(MON, 12, 59)) && !s.is_active(at(MON, 10, 0)));
        // Friday's night range runs into Saturday; Monday's early hours are Sunday's, not listed.
        assert!(s.is_active(at(SAT, 0, 30)) && !s.is_active(at(MON, 0, 30)));
        assert_eq!(s.to_string(), "mon,tue,wed,thu,fri 07:00-08:00,12:00-13:00,22:00-01:00");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(err(&[], &["25:00-26:00"]), r#""25:00" is not a time (HH:MM, 00:00-24:00)"#);
        assert_eq!(err(&[], &["08:00-24:01"]), r#""24:01" is not a time (HH:MM, 00:00-24:00)"#);
        assert_eq!(err(&[], &["08:60-09:00"]), r#""08:60" is not a time (HH:MM, 00:00-24:00)"#);
        assert_eq!(err(&[], &["8h-9h"]), r#""8h" is not a time (HH:MM, 00:00-24:00)"#);
        assert_eq!(err(&[], &["08:0-09:00"]), r#""08:0" is not a time (HH:MM, 00:00-24:00)"#);
        assert_eq!(err(&[], &["+8:00-09:00"]), r#""+8:00" is not a time (HH:MM, 00:00-24:00)"#);
        assert_eq!(
            err(&[], &["08:00"]),
            r#""08:00" is not a time range (HH:MM-HH:MM, e.g. "08:00-17:30" or "21:00-07:00")"#
        );
        assert_eq!(err(&[], &["24:00-08:00"]), r#"time range "24:00-08:00" starts at 24:00; use 00:00"#);
        assert!(err(&[], &["08:00-08:00"]).contains("is empty"));
        assert_eq!(
            err(&["funday"], &[]),
            r#""funday" is not a day (mon..sun, a range like "mon-fri", "weekdays", "weekend", "daily")"#
        );
        assert!(err(&["mon-"], &[]).starts_with(r#""mon-" is not a day"#));
        assert!(err(&["mon-fri-sat"], &[]).starts_with(r#""mon-fri-sat" is not a day"#));
        assert!(err(&[""], &[]).starts_with(r#""" is not a day"#));
        // Short hours are accepted.
        assert!(sched(&[], &["8:00-9:30"]).is_active(at(MON, 9, 0)));
    }

    #[test]
    fn deserializes_from_toml_with_positions() {
        #[derive(Deserialize, Debug)]
        struct Rule {
            #[allow(dead_code)]
            name: String,
            schedule: Schedule,
        }
        let r: Rule =
            toml::from_str("name = 'school'\nschedule = { days = ['mon-fri'], times = ['08:00-13:00'] }\n").unwrap();
        assert!(r.schedule.is_active(at(MON, 9, 0)) && !r.schedule.is_active(at(SAT, 9, 0)));
        let r: Rule = toml::from_str("name = 'x'\n[schedule]\ndays = 'weekend'\n").unwrap();
        assert!(r.schedule.is_active(at(SUN, 3, 0)) && !r.schedule.is_active(at(FRI, 3, 0)));
        let e = toml::from_str::<Rule>("name = 'x'\nschedule = { days = ['mon'], times = ['25:00-26:00'] }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#""25:00" is not a time"#) && e.contains("line 2"), "{e}");
        let e = toml::from_str::<Rule>("name = 'x'\nschedule = { day = ['mon'] }\n").unwrap_err().to_string();
        assert!(e.contains("day") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn clock_converts_to_local_wall_time() {
        let z = Clock::utc();
        // 1970-01-01 was a Thursday.
        assert_eq!(z.local(0), LocalTime { weekday: 3, minute: 0 });
        // 2026-03-27 is a Friday.
        assert_eq!(z.local(utc(2026, 3, 27, 20, 59, 59) + 999_999), at(FRI, 20, 59));
        assert_eq!(z.local(utc(2026, 3, 27, 21, 0, 0)), at(FRI, 21, 0));
        let tokyo = Clock::fixed("Asia/Tokyo").unwrap_or_else(|_| Clock::fixed("JST-9").unwrap());
        assert_eq!(tokyo.local(utc(2026, 3, 27, 20, 0, 0)), at(SAT, 5, 0));
        let ny = Clock::fixed("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(ny.local(utc(2026, 1, 5, 3, 0, 0)), at(SUN, 22, 0));
        // Absurd timestamps are clamped, not a panic.
        let far = z.local(u64::MAX);
        assert!(far.weekday < 7 && far.minute < 1440);
    }

    #[test]
    fn boundaries_through_a_clock() {
        let clock = rome();
        let s = sched(&["fri"], &["21:00-07:00"]);
        // 2026-03-27 is a Friday; Rome is UTC+1 in winter.
        let on = |us: u64| s.is_active(clock.local(us));
        assert!(!on(utc(2026, 3, 27, 19, 59, 59)), "20:59:59 local");
        assert!(on(utc(2026, 3, 27, 20, 0, 0)), "21:00:00 local");
        assert!(on(utc(2026, 3, 27, 23, 30, 0)), "Saturday 00:30 local");
        // Saturday 2026-03-28 06:59:59 and 07:00:00 local.
        assert!(on(utc(2026, 3, 28, 5, 59, 59)));
        assert!(!on(utc(2026, 3, 28, 6, 0, 0)));
    }

    #[test]
    fn follows_wall_clock_across_dst_changes() {
        let clock = rome();
        // 2026-03-29 (Sunday): 02:00 CET becomes 03:00 CEST at 01:00 UTC.
        assert_eq!(clock.local(utc(2026, 3, 29, 0, 59, 0)), at(SUN, 1, 59));
        assert_eq!(clock.local(utc(2026, 3, 29, 1, 0, 0)), at(SUN, 3, 0));
        let work = sched(&["sun"], &["08:00-17:30"]);
        assert!(!work.is_active(clock.local(utc(2026, 3, 29, 5, 59, 59))), "07:59:59 CEST");
        assert!(work.is_active(clock.local(utc(2026, 3, 29, 6, 0, 0))), "08:00 CEST");
        assert!(work.is_active(clock.local(utc(2026, 3, 29, 15, 29, 0))), "17:29 CEST");
        assert!(!work.is_active(clock.local(utc(2026, 3, 29, 15, 30, 0))), "17:30 CEST");
        // The skipped hour never happens.
        let lost = sched(&["sun"], &["02:00-03:00"]);
        let mut t = utc(2026, 3, 28, 22, 0, 0);
        while t < utc(2026, 3, 29, 4, 0, 0) {
            assert!(!lost.is_active(clock.local(t)));
            t += 60_000_000;
        }
        // An overnight range over the change: Saturday 22:00 CET to Sunday 06:00 CEST is 7 real hours.
        let night = sched(&["sat"], &["22:00-06:00"]);
        let minutes =
            (0..24 * 60).filter(|m| night.is_active(clock.local(utc(2026, 3, 28, 12, 0, 0) + m * 60_000_000))).count();
        assert_eq!(minutes, 7 * 60);

        // 2026-10-25 (Sunday): 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:xx happens twice.
        assert_eq!(clock.local(utc(2026, 10, 25, 0, 30, 0)), at(SUN, 2, 30));
        assert_eq!(clock.local(utc(2026, 10, 25, 1, 30, 0)), at(SUN, 2, 30));
        assert!(!work.is_active(clock.local(utc(2026, 10, 25, 6, 59, 59))), "07:59:59 CET");
        assert!(work.is_active(clock.local(utc(2026, 10, 25, 7, 0, 0))), "08:00 CET");
        assert!(!work.is_active(clock.local(utc(2026, 10, 25, 16, 30, 0))), "17:30 CET");
        let repeated = sched(&["sun"], &["02:00-03:00"]);
        let minutes = (0..24 * 60)
            .filter(|m| repeated.is_active(clock.local(utc(2026, 10, 24, 12, 0, 0) + m * 60_000_000)))
            .count();
        assert_eq!(minutes, 2 * 60, "the repeated hour is active both times");
        let minutes =
            (0..24 * 60).filter(|m| night.is_active(clock.local(utc(2026, 10, 24, 12, 0, 0) + m * 60_000_000))).count();
        assert_eq!(minutes, 9 * 60);
    }

    #[test]
    fn clock_zones() {
        assert_eq!(rome().local(0), LocalTime { weekday: 3, minute: 60 });
        let e = Clock::fixed("Europe/Nowhere").unwrap_err().to_string();
        assert!(e.starts_with(r#"unknown time zone "Europe/Nowhere""#), "{e}");
        assert!(Clock::fixed("").is_err());
        // A POSIX rule works where zoneinfo is missing, and agrees with it.
        let posix = Clock::fixed("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        for t in [
            utc(2026, 3, 29, 0, 59, 0),
            utc(2026, 3, 29, 1, 0, 0),
            utc(2026, 10, 25, 0, 30, 0),
            utc(2026, 10, 25, 1, 30, 0),
        ] {
            assert_eq!(posix.local(t), rome().local(t));
        }
        assert_eq!(Clock::fixed("UTC").unwrap().local(0), LocalTime { weekday: 3, minute: 0 });
        // The system zone always yields a usable clock.
        let (clock, _warning) = Clock::system();
        let now = clock.local(1_780_000_000_000_000);
        assert!(now.weekday < 7 && now.minute < 1440);
    }
}
