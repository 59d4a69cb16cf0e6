//! Amounts as people read and type them.
//!
//! Cairn amounts are whole base units (a `u64`); there is no decimal point in the
//! protocol, so the wallet shows and takes integers. Output groups digits in threes
//! (`1,000,000`); input accepts plain digits with optional `_` or `,` separators.

use cairn_core::Amount;

/// `1234567` -> `"1,234,567"`.
pub fn format_amount(amount: u64) -> String {
    let digits = amount.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Parses a non-negative integer amount, allowing `_` and `,` as digit separators.
pub fn parse_amount(text: &str) -> Result<Amount, String> {
    let cleaned: String = text.trim().chars().filter(|c| *c != '_' && *c != ',').collect();
    if cleaned.is_empty() || !cleaned.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not an amount: expected a whole number of base units, like 1000 or 1_000"
        ));
    }
    cleaned
        .parse::<u64>()
        .map(Amount)
        .map_err(|_| format!("`{text}` is larger than the largest amount ({})", u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_thousands_separators() {
        assert_eq!(format_amount(0), "0");
        assert_eq!(format_amount(999), "999");
        assert_eq!(format_amount(1000), "1,000");
        assert_eq!(format_amount(1_234_567), "1,234,567");
        assert_eq!(format_amount(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn parses_plain_and_separated_amounts() {
        assert_eq!(parse_amount("1000"), Ok(Amount(1000)));
        assert_eq!(parse_amount("1_000"), Ok(Amount(1000)));
        assert_eq!(parse_amount("1,000,000"), Ok(Amount(1_000_000)));
        assert!(parse_amount("").is_err());
        assert!(parse_amount("-5").is_err());
        assert!(parse_amount("1.5").is_err());
        assert!(parse_amount("18446744073709551616").is_err());
    }
}
