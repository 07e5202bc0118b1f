//! Durations as the config file writes them: one number and one unit, `500ms`, `10s`, `1.5s`,
//! `2m`, `1h`; and back, the same way.
//!
//! # Why not `humantime`
//!
//! `humantime` reads a wider language than this file promises (`1h 30m`, `5 s`, `2days`, `µs`),
//! so its input would need this module's check of the form in front of it anyway, and its
//! arithmetic differs at the edges from what the file has always accepted: a fraction of an hour
//! must come to whole seconds (`0.001h`, 3.6s, is refused) and a fraction of a millisecond finer
//! than a nanosecond is an error rather than cut off. What it would replace is the twenty lines of
//! exact integer arithmetic below, so it does not earn its place here.
//!
//! Printing stays `90s` rather than `humantime`'s `1m 30s`: every duration in a message is one an
//! operator may copy back into the file, so [`format_duration`] prints in the one-unit form that
//! [`parse_duration`] reads, and the two round-trip.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a duration with a unit: `500ms`, `10s`, `2m`, `1h`, `1.5s` (up to 9 decimals).
///
/// # Errors
///
/// A complete message, like `bad duration "5x": expected a number with a unit (ms, s, m, h)`,
/// for a missing or unknown unit, a negative or malformed number, or a value too large.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a number with a unit (ms, s, m, h)";
    let bad = |why: &str| format!("bad duration {s:?}: {why}");
    if s.starts_with('-') {
        return Err(bad("must not be negative"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return Err(bad(EXPECTED)),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (number.contains('.') && !digits(fraction)) {
        return Err(bad(EXPECTED));
    }
    if fraction.len() > 9 {
        return Err(bad("at most 9 decimal places"));
    }
    let too_large = || bad("too large");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let value: u128 = fraction.parse().map_err(|_| too_large())?;
        value * unit_nanos / 10u128.pow(u32::try_from(fraction.len()).unwrap_or(9))
    };
    let nanos = whole
        .checked_mul(unit_nanos)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_large())?;
    // The remainder is below 10^9, so it fits.
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Ok(Duration::new(secs, subsec))
}

/// Formats a duration the way [`parse_duration`] reads it: `0s`, `500ms`, `10.5s`, `90s`, `2m`.
#[must_use]
pub fn format_duration(d: Duration) -> String {
    const MINUTE: u128 = 60 * NANOS_PER_SEC;
    const HOUR: u128 = 60 * MINUTE;
    let nanos = d.as_nanos();
    if nanos == 0 {
        "0s".to_owned()
    } else if nanos % HOUR == 0 {
        format!("{}h", nanos / HOUR)
    } else if nanos % MINUTE == 0 {
        format!("{}m", nanos / MINUTE)
    } else if nanos >= NANOS_PER_SEC {
        decimal(nanos, NANOS_PER_SEC, 9, "s")
    } else {
        decimal(nanos, 1_000_000, 6, "ms")
    }
}

/// `n / unit` with its fraction, trailing zeros trimmed.
fn decimal(n: u128, unit: u128, unit_digits: usize, suffix: &str) -> String {
    let (whole, fraction) = (n / unit, n % unit);
    if fraction == 0 {
        return format!("{whole}{suffix}");
    }
    let fraction = format!("{fraction:0unit_digits$}");
    format!("{whole}.{}{suffix}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_duration("0.25m"), Ok(ms(15_000)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
        let expected = "expected a number with a unit (ms, s, m, h)";
        for bad in [
            "5", "5x", "", "s", ".5s", "5.s", "1.2.3s", "5 s", " 5s", "5S", "+5s", "1e3s", "五s",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(format!("bad duration {bad:?}: {expected}"))
            );
        }
        assert_eq!(
            parse_duration("-1s"),
            Err("bad duration \"-1s\": must not be negative".into())
        );
        assert!(parse_duration("0.0000000001s")
            .unwrap_err()
            .contains("at most 9 decimal places"));
        assert!(parse_duration("99999999999999999999999999999999999999999h")
            .unwrap_err()
            .ends_with("too large"));
        assert!(parse_duration("18446744073709551616s")
            .unwrap_err()
            .ends_with("too large"));
    }

    #[test]
    fn durations_format_the_way_they_parse() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_millis(10_500), "10.5s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(7_200), "2h"),
            (Duration::new(1, 1), "1.000000001s"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d));
        }
    }
}
