//! Predictable partition names: `<parent>_pYYYYMM` for months and years, `<parent>_pYYYYMMDD` for
//! days and weeks, `<parent>_pYYYYMMDD_HHMI` within a day, `<parent>_p<start>` for integers,
//! `<parent>_default`. Names longer than PostgreSQL's 63 bytes keep their suffix whole and
//! shorten the parent part, adding a hash of the full parent name so two long parents that
//! share a prefix never collide.

use super::step::Step;
use chrono::NaiveDateTime;

pub const MAX_IDENTIFIER_BYTES: usize = 63;

pub fn time_suffix(step: Step, lower: NaiveDateTime) -> String {
    match step {
        Step::Months(_) => lower.format("p%Y%m").to_string(),
        Step::Days(_) | Step::Weeks(_) => lower.format("p%Y%m%d").to_string(),
        Step::Hours(_) | Step::Minutes(_) | Step::Width(_) => {
            lower.format("p%Y%m%d_%H%M").to_string()
        }
    }
}

pub fn int_suffix(lower: i64) -> String {
    format!("p{lower}")
}

/// The child table's name for `parent` (its bare relation name) and a suffix.
pub fn child_name(parent: &str, suffix: &str) -> String {
    let full = format!("{parent}_{suffix}");
    if full.len() <= MAX_IDENTIFIER_BYTES {
        return full;
    }
    let tag = format!("{:08x}", fnv1a(parent.as_bytes()));
    let tag = &tag[..6];
    let room = MAX_IDENTIFIER_BYTES - suffix.len() - tag.len() - 2;
    let mut cut = room.min(parent.len());
    while !parent.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{tag}_{suffix}", &parent[..cut])
}

/// FNV-1a: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod pure_tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    #[test]
    fn suffixes_follow_the_interval() {
        let t = at("2026-11-01 06:30");
        assert_eq!(time_suffix(Step::Months(1), t), "p202611");
        assert_eq!(time_suffix(Step::Months(12), t), "p202611");
        assert_eq!(time_suffix(Step::Days(1), t), "p20261101");
        assert_eq!(time_suffix(Step::Weeks(1), t), "p20261101");
        assert_eq!(time_suffix(Step::Hours(1), t), "p20261101_0630");
        assert_eq!(int_suffix(-100_000), "p-100000");
        assert_eq!(child_name("orders", "p202611"), "orders_p202611");
        assert_eq!(child_name("Order Items", "default"), "Order Items_default");
    }

    #[test]
    fn long_names_are_cut_to_63_bytes_without_collisions() {
        let a = "a".repeat(60) + "_left";
        let b = "a".repeat(60) + "_right";
        let (na, nb) = (
            child_name(&a, "p20261121_1345"),
            child_name(&b, "p20261121_1345"),
        );
        assert_eq!(na.len(), MAX_IDENTIFIER_BYTES);
        assert!(na.ends_with("_p20261121_1345") && nb.ends_with("_p20261121_1345"));
        assert_ne!(na, nb);
        assert_eq!(child_name(&a, "p20261121_1345"), na, "deterministic");
        let exactly = "b".repeat(63 - "_p202611".len());
        assert_eq!(child_name(&exactly, "p202611").len(), 63);
        assert_eq!(
            child_name(&exactly, "p202611"),
            format!("{exactly}_p202611")
        );
    }

    #[test]
    fn multibyte_parents_are_cut_on_a_character_boundary() {
        let parent = "é".repeat(40); // 80 bytes
        let name = child_name(&parent, "p-9223372036854775808");
        assert!(name.len() <= MAX_IDENTIFIER_BYTES);
        assert!(name.ends_with("_p-9223372036854775808"));
        assert!(name.starts_with("éé"));
    }
}
