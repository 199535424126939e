//! The size of a btree that does not exist yet, from the table's row count and the average width
//! of the indexed columns: the planner's page count for a hypothetical index, and the bytes
//! recommend_indexes reports and budgets with.

/// Usable bytes on an 8 kB btree page: BLCKSZ less the page header (24) and btree special (16).
const USABLE_PAGE: f64 = 8152.0;
/// CREATE INDEX fills leaf pages to the default btree fillfactor.
const LEAF_FILL: f64 = 0.90;
const BLOCK_SIZE: u64 = 8192;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    pub pages: u32,
    pub tree_height: i32,
    pub bytes: u64,
}

fn max_align(bytes: f64) -> f64 {
    (bytes / 8.0).ceil() * 8.0
}

/// `tuples` rows whose indexed columns average `width` bytes in all.
pub fn estimate(tuples: f64, width: i32) -> Size {
    // Index tuple header (8), the data (MAXALIGNed, a null bitmap is rare), a line pointer (4).
    let line = 8.0 + max_align(f64::from(width.max(1))) + 4.0;
    let per_leaf = (USABLE_PAGE * LEAF_FILL / line).floor().max(2.0);
    let leaves = (tuples.max(0.0) / per_leaf).ceil().max(1.0);
    let fanout = (USABLE_PAGE / line).floor().max(2.0);
    let (mut level, mut height, mut pages) = (leaves, 0, leaves);
    while level > 1.0 {
        level = (level / fanout).ceil();
        pages += level;
        height += 1;
    }
    pages += 1.0; // the metapage
    let pages = pages.min(f64::from(u32::MAX - 1)) as u32;
    Size {
        pages,
        tree_height: height,
        bytes: u64::from(pages) * BLOCK_SIZE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_bigints_take_about_what_postgresql_builds() {
        // CREATE INDEX ON t (id) over 1M bigint rows: 2,745 pages (21.4 MB) on PostgreSQL 15.
        let size = estimate(1_000_000.0, 8);
        assert!((2_600..=2_900).contains(&size.pages), "{size:?}");
        assert_eq!(size.tree_height, 2);
    }

    #[test]
    fn an_empty_table_still_has_a_root_and_a_metapage() {
        let size = estimate(0.0, 8);
        assert_eq!((size.pages, size.tree_height, size.bytes), (2, 0, 16_384));
    }

    #[test]
    fn wider_keys_make_bigger_and_taller_trees() {
        let narrow = estimate(10_000_000.0, 8);
        let wide = estimate(10_000_000.0, 200);
        assert!(wide.pages > narrow.pages * 5);
        assert!(wide.tree_height >= narrow.tree_height);
    }
}
