//! Identifiers with check characters, each refused with the reason a person can act on.
//!
//! - Resident identity number (公民身份号码, GB 11643-1999): 6-digit region, 8-digit birth date,
//!   3-digit sequence, and a check character by ISO 7064 MOD 11-2 (`0`–`9` or `X`).
//! - Unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters from a 31-symbol
//!   alphabet (no I, O, Z, S, V); the last is a check character mod 31.
//! - ISO 7064 MOD 37,36 (hybrid system): the check character of e-licence identifiers
//!   (GB/T 36903).

use chrono::{Datelike, NaiveDate};

/// Why an identifier is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid<T>(reason: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(reason.into()))
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECKS: &[u8; 11] = b"10X98765432";

/// A resident identity number: its region code and birth date, once the check character holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentId {
    pub number: String,
    pub region: String,
    pub born: NaiveDate,
}

/// Checks an 18-character resident identity number (a lower-case `x` is read as `X`).
pub fn resident_id(text: &str) -> Result<ResidentId, Invalid> {
    let number = text.trim().to_ascii_uppercase();
    let bytes = number.as_bytes();
    if bytes.len() != 18 {
        return invalid(format!(
            "a resident identity number has 18 characters, this has {}",
            number.chars().count()
        ));
    }
    if !bytes[..17].iter().all(u8::is_ascii_digit) {
        return invalid("the first 17 characters of a resident identity number are digits");
    }
    let sum: u32 = bytes[..17]
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let expected = ID_CHECKS[(sum % 11) as usize];
    if bytes[17] != expected {
        return invalid(format!(
            "the check character is {}, not {} (GB 11643): a digit is mistyped",
            expected as char, bytes[17] as char
        ));
    }
    let born = NaiveDate::parse_from_str(&number[6..14], "%Y%m%d")
        .ok()
        .filter(|d| *d <= chrono::Utc::now().date_naive() && d.year() >= 1800)
        .ok_or_else(|| Invalid(format!("{} is not a birth date", &number[6..14])))?;
    Ok(ResidentId {
        region: number[..6].to_owned(),
        born,
        number,
    })
}

/// The 31 symbols of a unified social credit code, by value.
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// A unified social credit code: who registered it, the kind of body and its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditCode {
    pub code: String,
    /// 1 机构编制, 5 民政, 9 工商 (market regulation), …
    pub authority: char,
    pub kind: char,
    pub region: String,
}

/// Checks an 18-character unified social credit code (lower case is read as upper).
pub fn credit_code(text: &str) -> Result<CreditCode, Invalid> {
    let code = text.trim().to_ascii_uppercase();
    let bytes = code.as_bytes();
    if bytes.len() != 18 {
        return invalid(format!(
            "a unified social credit code has 18 characters, this has {}",
            code.chars().count()
        ));
    }
    let mut values = [0u32; 18];
    for (i, b) in bytes.iter().enumerate() {
        values[i] = USCC_ALPHABET.iter().position(|a| a == b).ok_or_else(|| {
            Invalid(format!(
                "character {} ({}) is not used in credit codes (no I, O, Z, S or V)",
                i + 1,
                *b as char
            ))
        })? as u32;
    }
    if !bytes[2..8].iter().all(u8::is_ascii_digit) {
        return invalid("characters 3 to 8 of a credit code are the region's digits");
    }
    let sum: u32 = values[..17]
        .iter()
        .zip(USCC_WEIGHTS)
        .map(|(v, w)| v * w)
        .sum();
    let expected = USCC_ALPHABET[((31 - sum % 31) % 31) as usize];
    if bytes[17] != expected {
        return invalid(format!(
            "the check character is {}, not {} (GB 32100): a character is mistyped",
            expected as char, bytes[17] as char
        ));
    }
    Ok(CreditCode {
        authority: bytes[0] as char,
        kind: bytes[1] as char,
        region: code[2..8].to_owned(),
        code,
    })
}

const MOD37_36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn mod37_36_value(b: u8) -> Option<u32> {
    MOD37_36.iter().position(|a| *a == b).map(|p| p as u32)
}

/// The ISO 7064 MOD 37,36 check character of `text` (digits and capital letters), or `None`
/// for a character outside them.
pub fn mod37_36_check(text: &str) -> Option<char> {
    let mut p = 36;
    for b in text.bytes() {
        let mut s = (p + mod37_36_value(b)?) % 36;
        if s == 0 {
            s = 36;
        }
        p = (s * 2) % 37;
    }
    Some(MOD37_36[((37 - p) % 36) as usize] as char)
}

/// Whether the last character of `text` is the MOD 37,36 check character of the rest.
pub fn mod37_36_valid(text: &str) -> bool {
    match text.char_indices().last() {
        Some((i, last)) if i > 0 => mod37_36_check(&text[..i]) == Some(last),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published examples (the GB 11643 annex's, textbook and registry ones) and the same with
    /// one character changed.
    #[test]
    fn resident_identity_numbers() {
        let cases = [
            ("11010519491231002X", Ok(("110105", "1949-12-31"))),
            ("11010519491231002x", Ok(("110105", "1949-12-31"))),
            ("440524188001010014", Ok(("440524", "1880-01-01"))),
            ("370202298801010017", Err("birth date")),
            ("11010119900307803X", Ok(("110101", "1990-03-07"))),
            ("110101199003078034", Err("check character is X, not 4")),
            ("370202198813140017", Err("check character")),
            ("3702021988", Err("18 characters")),
            ("37020219880101A01X", Err("digits")),
        ];
        for (number, expected) in cases {
            match (resident_id(number), expected) {
                (Ok(id), Ok((region, born))) => {
                    assert_eq!(id.region, region, "{number}");
                    assert_eq!(id.born.to_string(), born, "{number}");
                }
                (Err(e), Err(reason)) => assert!(e.0.contains(reason), "{number}: {e}"),
                (got, want) => panic!("{number}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn unified_social_credit_codes() {
        let cases = [
            ("91350100M000100Y43", Ok(('9', '1', "350100"))),
            ("91110000100017643K", Ok(('9', '1', "110000"))),
            ("91370200163562681G", Ok(('9', '1', "370200"))),
            ("911101085923662400", Ok(('9', '1', "110108"))),
            ("91370200163562681H", Err("check character is G, not H")),
            ("91370200163562681O", Err("not used in credit codes")),
            ("9137020016356268", Err("18 characters")),
            ("91AB0200163562681G", Err("region")),
        ];
        for (code, expected) in cases {
            match (credit_code(code), expected) {
                (Ok(c), Ok((authority, kind, region))) => {
                    assert_eq!(
                        (c.authority, c.kind, c.region.as_str()),
                        (authority, kind, region),
                        "{code}"
                    );
                }
                (Err(e), Err(reason)) => assert!(e.0.contains(reason), "{code}: {e}"),
                (got, want) => panic!("{code}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// ISO 7064's own example for MOD 37,36 and its single-character errors.
    #[test]
    fn iso_7064_mod_37_36() {
        assert_eq!(mod37_36_check("A12425GABC1234002"), Some('M'));
        assert!(mod37_36_valid("A12425GABC1234002M"));
        assert!(!mod37_36_valid("A12425GABC1234003M"));
        assert!(!mod37_36_valid("A12425GABC1234002N"));
        assert_eq!(mod37_36_check("a"), None);
        assert!(!mod37_36_valid("M"));
        // Every single-character substitution is caught.
        let good = "A12425GABC1234002M";
        for i in 0..good.len() {
            for b in MOD37_36 {
                let mut bytes = good.as_bytes().to_vec();
                if bytes[i] == *b {
                    continue;
                }
                bytes[i] = *b;
                let changed = String::from_utf8(bytes).expect("ascii");
                assert!(!mod37_36_valid(&changed), "{changed}");
            }
        }
    }
}
