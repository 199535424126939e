//! What an archive run reads from the catalog: keys, columns, references, partitions.

use crate::errors::OrRaise;
use crate::ident::{quote_identifier, text_pairs};
use pgrx::prelude::*;

/// The columns that identify a row: the primary key, else the shortest unique index over plain
/// NOT NULL columns (no expression, no predicate). Quoted names.
pub fn key_columns(oid: pg_sys::Oid) -> Option<Vec<String>> {
    Spi::get_one_with_args::<Vec<String>>(
        "SELECT array_agg(pg_catalog.quote_ident(a.attname::text) ORDER BY k.i)
           FROM (SELECT i.indexrelid, i.indkey
                   FROM pg_catalog.pg_index i
                  WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid
                    AND i.indpred IS NULL AND i.indexprs IS NULL
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute n
                                     WHERE n.attrelid = i.indrelid
                                       AND n.attnum = ANY (i.indkey::int2[]) AND NOT n.attnotnull)
                  ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid
                  LIMIT 1) best
           CROSS JOIN LATERAL unnest(best.indkey::int2[]) WITH ORDINALITY AS k(attnum, i)
           JOIN pg_catalog.pg_attribute a ON a.attrelid = $1 AND a.attnum = k.attnum",
        &[oid.into()],
    )
    .or_raise("finding a key")
}

/// (name, type) of each column, in order.
pub fn columns(oid: pg_sys::Oid) -> Vec<(String, String)> {
    text_pairs(
        "SELECT attname::text, pg_catalog.format_type(atttypid, atttypmod)
           FROM pg_catalog.pg_attribute
          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        oid,
        "listing columns",
    )
}

/// All columns, quoted and comma-separated (generated ones included: the archive keeps their
/// values as plain columns).
pub fn all_columns(oid: pg_sys::Oid) -> String {
    columns(oid)
        .iter()
        .map(|(name, _)| quote_identifier(name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether any foreign key references `oid`.
pub fn is_referenced(oid: pg_sys::Oid) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                         WHERE contype = 'f' AND confrelid = $1)",
        &[oid.into()],
    )
    .or_raise("looking for foreign keys")
    .unwrap_or(false)
}

/// A partition directly under a partitioned table.
#[derive(Debug, Clone)]
pub struct Partition {
    pub oid: pg_sys::Oid,
    pub name: String,
    pub partitioned: bool,
    /// `pg_get_expr(relpartbound)`: `FOR VALUES …` or `DEFAULT`.
    pub bound: String,
}

pub fn partitions(parent: pg_sys::Oid) -> Vec<Partition> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT c.oid, c.relname::text, c.relkind = 'p',
                        pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                   FROM pg_catalog.pg_inherits i
                   JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                  WHERE i.inhparent = $1
                  ORDER BY c.relname",
                None,
                &[parent.into()],
            )?
            .map(|row| {
                Ok(Partition {
                    oid: row.get(1)?.unwrap_or(pg_sys::InvalidOid),
                    name: row.get(2)?.unwrap_or_default(),
                    partitioned: row.get(3)?.unwrap_or(false),
                    bound: row.get(4)?.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .or_raise("listing partitions")
}

/// The partition key's only column when `oid` is partitioned by RANGE on one plain column.
pub fn range_key_column(oid: pg_sys::Oid) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT (SELECT a.attname::text FROM pg_catalog.pg_partitioned_table p
                   JOIN pg_catalog.pg_attribute a
                     ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
                  WHERE p.partrelid = $1 AND p.partstrat = 'r' AND p.partnatts = 1)",
        &[oid.into()],
    )
    .or_raise("reading the partition key")
}
