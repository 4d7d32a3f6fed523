//! Calendar arithmetic for the CMOS RTC: Unix seconds <-> broken-down date
//! (proleptic Gregorian, days-from-civil), BCD and 12-hour encodings.

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 1 (Sunday) - 7 (Saturday), as the RTC numbers them.
    pub weekday: u32,
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day number (days since 1970-01-01).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl DateTime {
    /// The broken-down form of Unix time `secs`.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            // 1970-01-01 was a Thursday (5 in RTC numbering).
            weekday: ((days + 4).rem_euclid(7) + 1) as u32,
        }
    }

    /// Unix time of this date, after clamping each field to its valid range
    /// (the guest may write anything).
    pub fn to_unix(self) -> i64 {
        let year = self.year.clamp(0, 9999);
        let month = self.month.clamp(1, 12);
        let day = self.day.clamp(1, days_in_month(year, month));
        days_from_civil(year, month, day) * 86_400
            + i64::from(self.hour.min(23)) * 3600
            + i64::from(self.minute.min(59)) * 60
            + i64::from(self.second.min(59))
    }
}

/// Binary to packed BCD (two digits).
pub fn to_bcd(v: u32) -> u8 {
    let v = v % 100;
    (((v / 10) << 4) | (v % 10)) as u8
}

/// Packed BCD to binary, leniently (nibbles above 9 count as their value).
pub fn from_bcd(v: u8) -> u32 {
    u32::from(v >> 4) * 10 + u32::from(v & 0xf)
}

/// Encode a field for the guest: BCD unless `binary`.
pub fn encode(v: u32, binary: bool) -> u8 {
    if binary {
        v as u8
    } else {
        to_bcd(v)
    }
}

/// Decode a guest-written field.
pub fn decode(v: u8, binary: bool) -> u32 {
    if binary {
        u32::from(v)
    } else {
        from_bcd(v)
    }
}

/// Encode an hour (0-23) for the guest, in 12-hour mode unless `h24`.
pub fn encode_hour(h: u32, binary: bool, h24: bool) -> u8 {
    if h24 {
        return encode(h, binary);
    }
    let pm = h >= 12;
    let h12 = match h % 12 {
        0 => 12,
        x => x,
    };
    encode(h12, binary) | if pm { 0x80 } else { 0 }
}

/// Decode a guest-written hour to 0-23.
pub fn decode_hour(v: u8, binary: bool, h24: bool) -> u32 {
    if h24 {
        return decode(v, binary);
    }
    let h = decode(v & 0x7f, binary) % 12;
    if v & 0x80 != 0 {
        h + 12
    } else {
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_round_trip() {
        for secs in [
            0i64,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
            -86_400,
            253_402_300_799,
        ] {
            assert_eq!(DateTime::from_unix(secs).to_unix(), secs, "{secs}");
        }
        let d = DateTime::from_unix(951_782_400); // 2000-02-29 00:00:00, Tuesday
        assert_eq!((d.year, d.month, d.day, d.weekday), (2000, 2, 29, 3));
        let d = DateTime::from_unix(1_700_000_000); // 2023-11-14 22:13:20 Tuesday
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.minute, d.second, d.weekday),
            (2023, 11, 14, 22, 13, 20, 3)
        );
    }

    #[test]
    fn clamping_bad_fields() {
        let d = DateTime {
            year: 2023,
            month: 2,
            day: 31,
            hour: 99,
            minute: 99,
            second: 99,
            weekday: 0,
        };
        let back = DateTime::from_unix(d.to_unix());
        assert_eq!(
            (back.month, back.day, back.hour, back.minute, back.second),
            (2, 28, 23, 59, 59)
        );
    }

    #[test]
    fn encodings() {
        assert_eq!(to_bcd(59), 0x59);
        assert_eq!(from_bcd(0x59), 59);
        assert_eq!(from_bcd(0xff), 165);
        assert_eq!(encode_hour(0, false, false), 0x12);
        assert_eq!(encode_hour(12, false, false), 0x92);
        assert_eq!(encode_hour(13, true, false), 0x81);
        assert_eq!(encode_hour(23, false, true), 0x23);
        assert_eq!(decode_hour(0x92, false, false), 12);
        assert_eq!(decode_hour(0x12, false, false), 0);
        assert_eq!(decode_hour(0x81, true, false), 13);
        assert_eq!(decode_hour(0x23, false, true), 23);
    }
}
