//! The `Date` field every response carries (RFC 9110 §6.6.1), as an IMF-fixdate. Formatting is
//! done at most once per second per shard: each shard is one thread, and each thread keeps the
//! last second it formatted and its text. Reading it costs a clock read and a 29-byte copy; no
//! lock, no allocation.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const HTTP_DATE_LEN: usize = 29;

/// Formats `unix_secs` (seconds since 1970-01-01 UTC) as an IMF-fixdate.
pub fn format_http_date(unix_secs: u64) -> [u8; HTTP_DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let second_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    text[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut text[5..7], day);
    text[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    // Four digits until the year 10000; past it the text would be wrong, not out of bounds.
    let year = year % 10_000;
    two_digits(&mut text[12..14], year / 100);
    two_digits(&mut text[14..16], year % 100);
    two_digits(&mut text[17..19], second_of_day / 3600);
    two_digits(&mut text[20..22], second_of_day / 60 % 60);
    two_digits(&mut text[23..25], second_of_day % 60);
    text
}

fn two_digits(out: &mut [u8], value: u64) {
    out[0] = b'0' + (value / 10 % 10) as u8;
    out[1] = b'0' + (value % 10) as u8;
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let (year, month, day) = crate::render::civil_from_days(days as i64);
    (year as u64, u64::from(month), u64::from(day))
}

/// The formatted date of the last second asked for.
#[derive(Debug)]
pub struct DateCache {
    second: Cell<u64>,
    text: Cell<[u8; HTTP_DATE_LEN]>,
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

impl DateCache {
    pub const fn new() -> DateCache {
        DateCache {
            second: Cell::new(u64::MAX),
            text: Cell::new([0; HTTP_DATE_LEN]),
        }
    }

    /// The date text of `unix_secs`, formatted only when the second changed.
    pub fn at(&self, unix_secs: u64) -> [u8; HTTP_DATE_LEN] {
        if self.second.get() != unix_secs {
            self.text.set(format_http_date(unix_secs));
            self.second.set(unix_secs);
        }
        self.text.get()
    }
}

thread_local! {
    /// The shard's cache (one thread per shard). Const-initialised: no lazy allocation.
    static SHARD_DATE: DateCache = const { DateCache::new() };
}

/// The current date as an IMF-fixdate, from this shard's once-a-second cache.
pub fn current_http_date() -> [u8; HTTP_DATE_LEN] {
    // A clock before 1970 is a broken host; the epoch is as good an answer as any.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SHARD_DATE.with(|cache| cache.at(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(unix_secs: u64) -> String {
        String::from_utf8(format_http_date(unix_secs).to_vec()).unwrap()
    }

    #[test]
    fn formats_imf_fixdate() {
        assert_eq!(text(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 9110's example.
        assert_eq!(text(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(text(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(text(1_700_592_780), "Tue, 21 Nov 2023 18:53:00 GMT");
        assert_eq!(text(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(text(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(text(253_402_300_799), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn every_day_of_a_leap_cycle_agrees_with_a_day_by_day_count() {
        // Walks 1970..2401 one day at a time with plain month lengths.
        let (mut year, mut month, mut day) = (1970u64, 1u64, 1u64);
        for days in 0..(431 * 365 + 105) {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
            let length = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > length {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }

    #[test]
    fn the_cache_formats_once_per_second() {
        let cache = DateCache::new();
        assert_eq!(&cache.at(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(cache.second.get(), 0);
        assert_eq!(&cache.at(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&cache.at(61), b"Thu, 01 Jan 1970 00:01:01 GMT");
        assert_eq!(cache.second.get(), 61);
    }

    #[test]
    fn the_current_date_has_the_fixed_shape() {
        let now = current_http_date();
        assert_eq!(&now[25..], b" GMT");
        assert_eq!(now[3], b',');
    }
}
