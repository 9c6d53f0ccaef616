//! Full-text product index, one per shard.
//!
//! Each shard indexes the products it owns. [`SearchIndex::upsert`] is
//! synchronous: a product is searchable as soon as the call returns. A query
//! fans out to every shard, each shard answers with its best `limit` hits
//! ([`SearchIndex::search`]) and the caller combines the pages with [`merge`].
//! Hits are ordered by [`SortKey`], which compares correctly across shards, so
//! a cursor (the key of the last hit) resumes the walk on every shard at once.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;

const K1: f64 = 1.2;
const B: f64 = 0.75;
const NAME_WEIGHT: f64 = 2.0;
const DESC_WEIGHT: f64 = 1.0;
const MAX_TOKEN_CHARS: usize = 64;
const MAX_QUERY_TERMS: usize = 32;
const MAX_CURSOR_LEN: usize = 512;

/// What the index needs of a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductDoc<'a> {
    /// Unique product identifier.
    pub sku: &'a str,
    /// Product name; its terms weigh twice as much as the description's.
    pub name: &'a str,
    /// Free-text description.
    pub description: &'a str,
    /// Category, matched exactly (case-sensitive) and counted in facets.
    pub category: &'a str,
    /// Price in cents.
    pub price_cents: i64,
    /// Creation time in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// Order of the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// BM25 score descending; newest first when the query has no text.
    #[default]
    Relevance,
    /// Cheapest first.
    PriceAsc,
    /// Most expensive first.
    PriceDesc,
    /// Most recently created first.
    Newest,
}

const SORT_NAMES: [(Sort, &str); 4] = [
    (Sort::Relevance, "relevance"),
    (Sort::PriceAsc, "price_asc"),
    (Sort::PriceDesc, "price_desc"),
    (Sort::Newest, "newest"),
];

impl Sort {
    /// First byte of a cursor made for this sort.
    fn tag(self) -> u8 {
        b"radn"[self as usize]
    }
}

/// Error for a `sort` parameter that names no known [`Sort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseSortError;

impl fmt::Display for ParseSortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sort must be one of relevance, price_asc, price_desc, newest")
    }
}

impl std::error::Error for ParseSortError {}

impl FromStr for Sort {
    type Err = ParseSortError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let found = SORT_NAMES.iter().find(|(_, name)| *name == s);
        found.map(|&(sort, _)| sort).ok_or(ParseSortError)
    }
}

/// A search request as run on one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Free text; a product matches if it contains any of its terms.
    pub text: Option<String>,
    /// Exact category filter (does not narrow the facets).
    pub category: Option<String>,
    /// Inclusive lower price bound in cents.
    pub min_price: Option<i64>,
    /// Inclusive upper price bound in cents.
    pub max_price: Option<i64>,
    /// Result order.
    pub sort: Sort,
    /// Maximum number of hits to return (the caller clamps it).
    pub limit: usize,
    /// Only return hits whose key is strictly greater than this one.
    pub after: Option<SortKey>,
}

/// A totally ordered position in a result list, comparable across shards:
/// ascending `SortKey` order == result order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    primary: i64,
    sku: String,
}

impl SortKey {
    /// Encodes the key as an opaque URL-safe cursor bound to `sort`.
    pub fn encode(&self, sort: Sort) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(17 + 2 * self.sku.len());
        out.push(char::from(sort.tag()));
        for b in (self.primary as u64)
            .to_be_bytes()
            .iter()
            .chain(self.sku.as_bytes())
        {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }

    /// Decodes a cursor made by [`SortKey::encode`] for the same `sort`;
    /// `None` for garbage, another sort's cursor or input over 512 bytes.
    pub fn decode(cursor: &str, sort: Sort) -> Option<SortKey> {
        let bytes = cursor.as_bytes();
        if bytes.len() > MAX_CURSOR_LEN || bytes.len() < 17 || bytes[0] != sort.tag() {
            return None;
        }
        let hex = &bytes[1..];
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        let raw = hex
            .chunks_exact(2)
            .map(|p| Some((nibble(p[0])? << 4) | nibble(p[1])?))
            .collect::<Option<Vec<u8>>>()?;
        let (prim, sku) = raw.split_at(8);
        let primary = u64::from_be_bytes(prim.try_into().ok()?) as i64;
        let sku = String::from_utf8(sku.to_vec()).ok()?;
        Some(SortKey { primary, sku })
    }
}

/// One result: the product and its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The product's SKU.
    pub sku: String,
    /// Its position in the result order; the last hit's key is the cursor.
    pub key: SortKey,
}

/// One shard's answer to a [`Query`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPage {
    /// At most `query.limit` hits, ascending key, all strictly after `query.after`.
    pub hits: Vec<Hit>,
    /// Category -> number of products matching text and price, ignoring the
    /// category filter (disjunctive facets) and pagination.
    pub facets: BTreeMap<String, u64>,
    /// Number of products matching all filters (ignoring pagination).
    pub total: u64,
}

/// Term frequencies of one term in one document: (name, description).
type Tf = (u32, u32);

/// Postings of one term: internal doc id -> term frequencies.
type Postings = HashMap<u32, Tf, BuildHasherDefault<IdHasher>>;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Cheap multiplicative hasher for internal `u32` doc ids.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(GOLDEN);
    }
}

/// Strings mapped to reusable `u32` ids, each with a value.
#[derive(Debug, Default)]
struct Interner<V> {
    ids: HashMap<Box<str>, u32>,
    slots: Vec<(Box<str>, V)>,
    free: Vec<u32>,
}

impl<V: Default> Interner<V> {
    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.get(s) {
            return id;
        }
        let slot = (Box::from(s), V::default());
        let id = self.free.pop().unwrap_or(self.slots.len() as u32);
        match self.slots.get_mut(id as usize) {
            Some(old) => *old = slot,
            None => self.slots.push(slot),
        }
        self.ids.insert(s.into(), id);
        id
    }
    fn release(&mut self, id: u32) {
        let (s, _) = std::mem::replace(&mut self.slots[id as usize], (Box::from(""), V::default()));
        self.ids.remove(&s);
        self.free.push(id);
    }
}

#[derive(Debug)]
struct Doc {
    sku: String,
    category: u32,
    price_cents: i64,
    created_at_ms: i64,
    name_len: u32,
    desc_len: u32,
    terms: Vec<u32>,
}

/// In-memory inverted index over the products of one shard.
#[derive(Debug, Default)]
pub struct SearchIndex {
    docs: Vec<Option<Doc>>,
    free: Vec<u32>,
    ids: HashMap<String, u32>,
    terms: Interner<Postings>,
    categories: Interner<u64>,
    name_len_sum: u64,
    desc_len_sum: u64,
}

/// Lowercases and splits on non-alphanumerics, dropping tokens over 64 chars.
fn tokenize(text: &str) -> Vec<String> {
    tokens(&text.to_lowercase()).map(str::to_owned).collect()
}

/// Splits already lowercased text into tokens.
fn tokens(lower: &str) -> impl Iterator<Item = &str> {
    lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty() && t.chars().nth(MAX_TOKEN_CHARS).is_none())
}

/// Maps an f64 to an i64 whose order matches `f64::total_cmp`.
fn total_order_bits(x: f64) -> i64 {
    let bits = x.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

impl SearchIndex {
    /// Creates an empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts `doc`, or replaces the document with the same SKU.
    pub fn upsert(&mut self, doc: ProductDoc<'_>) {
        self.remove(doc.sku);
        let (name, desc) = (doc.name.to_lowercase(), doc.description.to_lowercase());
        let mut tfs: HashMap<&str, Tf> = HashMap::new();
        let (mut name_len, mut desc_len) = (0u32, 0u32);
        for t in tokens(&name) {
            name_len = name_len.saturating_add(1);
            let e = tfs.entry(t).or_default();
            e.0 = e.0.saturating_add(1);
        }
        for t in tokens(&desc) {
            desc_len = desc_len.saturating_add(1);
            let e = tfs.entry(t).or_default();
            e.1 = e.1.saturating_add(1);
        }
        let id = self.free.pop().unwrap_or_else(|| {
            self.docs.push(None);
            (self.docs.len() - 1) as u32
        });
        let mut terms = Vec::with_capacity(tfs.len());
        for (term, tf) in tfs {
            let tid = self.terms.intern(term);
            self.terms.slots[tid as usize].1.insert(id, tf);
            terms.push(tid);
        }
        let category = self.categories.intern(doc.category);
        self.categories.slots[category as usize].1 += 1;
        self.name_len_sum += u64::from(name_len);
        self.desc_len_sum += u64::from(desc_len);
        self.ids.insert(doc.sku.to_owned(), id);
        self.docs[id as usize] = Some(Doc {
            sku: doc.sku.to_owned(),
            category,
            price_cents: doc.price_cents,
            created_at_ms: doc.created_at_ms,
            name_len,
            desc_len,
            terms,
        });
    }

    /// Removes the product with `sku`; returns whether it was present.
    pub fn remove(&mut self, sku: &str) -> bool {
        let Some(id) = self.ids.remove(sku) else {
            return false;
        };
        let Some(doc) = self.docs.get_mut(id as usize).and_then(Option::take) else {
            return false;
        };
        for &tid in &doc.terms {
            let postings = &mut self.terms.slots[tid as usize].1;
            postings.remove(&id);
            if postings.is_empty() {
                self.terms.release(tid);
            }
        }
        let count = &mut self.categories.slots[doc.category as usize].1;
        *count -= 1;
        if *count == 0 {
            self.categories.release(doc.category);
        }
        self.name_len_sum -= u64::from(doc.name_len);
        self.desc_len_sum -= u64::from(doc.desc_len);
        self.free.push(id);
        true
    }

    /// Number of indexed products.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index holds no product.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// BM25 scores by doc id (0.0 = no match) and the ids of the matching docs.
    fn score(&self, terms: &[String]) -> (Vec<f64>, Vec<u32>) {
        let n = self.len().max(1) as f64;
        let avg = |sum: u64| if sum == 0 { 1.0 } else { sum as f64 / n };
        let (avg_name, avg_desc) = (avg(self.name_len_sum), avg(self.desc_len_sum));
        let field = |tf: u32, len: u32, avg: f64| {
            if tf == 0 {
                return 0.0;
            }
            let tf = f64::from(tf);
            tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * f64::from(len) / avg))
        };
        let mut scores = vec![0.0; self.docs.len()];
        let mut matched = Vec::new();
        for term in terms {
            let Some(tid) = self.terms.get(term) else {
                continue;
            };
            let postings = &self.terms.slots[tid as usize].1;
            let df = postings.len() as f64;
            // Lucene's BM25 idf: always positive, so every match scores > 0.
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for (&id, &(name_tf, desc_tf)) in postings {
                let Some(doc) = self.docs.get(id as usize).and_then(Option::as_ref) else {
                    continue;
                };
                let s = NAME_WEIGHT * field(name_tf, doc.name_len, avg_name)
                    + DESC_WEIGHT * field(desc_tf, doc.desc_len, avg_desc);
                let slot = &mut scores[id as usize];
                if *slot == 0.0 {
                    matched.push(id);
                }
                *slot += (idf * s).max(f64::MIN_POSITIVE); // keep matches > 0
            }
        }
        (scores, matched)
    }

    /// Runs `query` on this shard's products.
    pub fn search(&self, query: &Query) -> SearchPage {
        let mut terms: Vec<String> = Vec::new();
        for t in query.text.as_deref().map(tokenize).into_iter().flatten() {
            if terms.len() == MAX_QUERY_TERMS {
                break;
            }
            if !terms.contains(&t) {
                terms.push(t);
            }
        }
        // Without text every doc matches (ids in slab order, freed ones skipped).
        let (scores, matched) = if terms.is_empty() {
            (Vec::new(), (0..self.docs.len() as u32).collect())
        } else {
            self.score(&terms)
        };
        let (min, max) = (
            query.min_price.unwrap_or(i64::MIN),
            query.max_price.unwrap_or(i64::MAX),
        );
        // An unknown category matches nothing but still leaves the facets.
        let category = query
            .category
            .as_deref()
            .map(|c| self.categories.get(c).unwrap_or(u32::MAX));
        let after = query.after.as_ref().map(|k| (k.primary, k.sku.as_str()));
        let mut facets = vec![0u64; self.categories.slots.len()];
        let mut total = 0u64;
        let mut heap: BinaryHeap<(i64, &str)> =
            BinaryHeap::with_capacity(query.limit.min(1024) + 1);
        for id in matched {
            let Some(doc) = &self.docs[id as usize] else {
                continue;
            };
            if doc.price_cents < min || doc.price_cents > max {
                continue;
            }
            facets[doc.category as usize] += 1;
            if category.is_some_and(|c| c != doc.category) {
                continue;
            }
            total += 1;
            let primary = match query.sort {
                Sort::Relevance if !terms.is_empty() => {
                    total_order_bits(-scores[id as usize] + 0.0)
                }
                Sort::Relevance | Sort::Newest => !doc.created_at_ms,
                Sort::PriceAsc => doc.price_cents,
                Sort::PriceDesc => !doc.price_cents,
            };
            let key = (primary, doc.sku.as_str());
            if query.limit == 0 || after.is_some_and(|a| key <= a) {
                continue;
            }
            if heap.len() < query.limit {
                heap.push(key);
            } else if heap.peek().is_some_and(|top| key < *top) {
                heap.pop();
                heap.push(key);
            }
        }
        let hits = heap
            .into_sorted_vec()
            .into_iter()
            .map(|(primary, sku)| {
                let key = SortKey {
                    primary,
                    sku: sku.to_owned(),
                };
                Hit {
                    sku: key.sku.clone(),
                    key,
                }
            })
            .collect();
        let facets = (facets.into_iter().zip(&self.categories.slots))
            .filter(|&(n, _)| n > 0)
            .map(|(n, (c, _))| (c.to_string(), n))
            .collect();
        SearchPage {
            hits,
            facets,
            total,
        }
    }
}

/// Merges the pages of several shards: hits sorted by key, cut to `limit`;
/// facets and totals summed; next = Some(key of last hit) when more hits exist
/// beyond this page (i.e. the merged hit count before cutting exceeded limit,
/// or any shard page was full), else None.
pub fn merge(
    pages: Vec<SearchPage>,
    limit: usize,
) -> (Vec<Hit>, BTreeMap<String, u64>, u64, Option<SortKey>) {
    let mut hits = Vec::new();
    let mut facets: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    let mut any_full = false;
    for page in pages {
        any_full |= page.hits.len() >= limit;
        hits.extend(page.hits);
        for (c, n) in page.facets {
            *facets.entry(c).or_insert(0) += n;
        }
        total += page.total;
    }
    hits.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let more = hits.len() > limit || any_full;
    hits.truncate(limit);
    let next = hits.last().filter(|_| more).map(|h| h.key.clone());
    (hits, facets, total, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashSet};

    const SORTS: [Sort; 4] = [
        Sort::Relevance,
        Sort::PriceAsc,
        Sort::PriceDesc,
        Sort::Newest,
    ];

    fn put(
        ix: &mut SearchIndex,
        sku: &str,
        name: &str,
        desc: &str,
        cat: &str,
        price: i64,
        at: i64,
    ) {
        ix.upsert(ProductDoc {
            sku,
            name,
            description: desc,
            category: cat,
            price_cents: price,
            created_at_ms: at,
        });
    }

    fn q(text: Option<&str>, sort: Sort, limit: usize) -> Query {
        Query {
            text: text.map(str::to_owned),
            sort,
            limit,
            ..Query::default()
        }
    }

    fn skus(page: &SearchPage) -> Vec<&str> {
        page.hits.iter().map(|h| h.sku.as_str()).collect()
    }

    /// Walks all pages over `shards`, passing the merged cursor through its
    /// encoded form; returns the hits and the first page's facets and total.
    fn walk(shards: &[&SearchIndex], base: &Query) -> (Vec<Hit>, BTreeMap<String, u64>, u64) {
        let mut query = base.clone();
        let mut all: Vec<Hit> = Vec::new();
        let mut first = None;
        for _ in 0..10_000 {
            let pages = shards.iter().map(|s| s.search(&query)).collect();
            let (hits, facets, total, next) = merge(pages, query.limit);
            first.get_or_insert((facets, total));
            all.extend(hits);
            let Some(key) = next else { break };
            query.after = Some(SortKey::decode(&key.encode(query.sort), query.sort).unwrap());
        }
        let (facets, total) = first.unwrap();
        (all, facets, total)
    }

    fn assert_strictly_ascending(hits: &[Hit]) {
        for w in hits.windows(2) {
            assert!(w[0].key < w[1].key, "{:?} !< {:?}", w[0].key, w[1].key);
        }
    }

    #[test]
    fn upsert_replace_removes_old_terms() {
        let mut ix = SearchIndex::new();
        put(&mut ix, "a", "Red Shoe", "leather", "shoes", 100, 1);
        put(&mut ix, "a", "Blue Boot", "suede", "boots", 200, 2);
        assert_eq!(ix.len(), 1);
        for gone in ["red", "shoe", "leather"] {
            assert_eq!(ix.search(&q(Some(gone), Sort::Relevance, 10)).total, 0);
            assert_eq!(ix.terms.get(gone), None);
        }
        let page = ix.search(&q(Some("boot"), Sort::Relevance, 10));
        assert_eq!(skus(&page), ["a"]);
        assert_eq!(page.facets, BTreeMap::from([("boots".to_owned(), 1)]));
        assert_eq!((ix.name_len_sum, ix.desc_len_sum), (2, 1));
    }

    #[test]
    fn remove_forgets_doc_and_reuses_slot() {
        let mut ix = SearchIndex::new();
        put(&mut ix, "a", "red shoe", "", "c", 1, 1);
        put(&mut ix, "b", "green shoe", "", "c", 1, 1);
        assert!(ix.remove("a"));
        assert!(!ix.remove("a"));
        assert!(!ix.remove("zzz"));
        assert_eq!(ix.len(), 1);
        assert_eq!(
            skus(&ix.search(&q(Some("shoe red"), Sort::Relevance, 10))),
            ["b"]
        );
        assert_eq!(ix.terms.get("red"), None);
        put(&mut ix, "c", "red hat", "", "c", 1, 1);
        assert_eq!(ix.docs.len(), 2, "freed slot reused");
        assert!(ix.remove("b") && ix.remove("c"));
        assert!(ix.is_empty() && ix.terms.ids.is_empty() && ix.categories.ids.is_empty());
        assert_eq!((ix.name_len_sum, ix.desc_len_sum), (0, 0));
        assert_eq!(ix.search(&q(None, Sort::Newest, 10)), SearchPage::default());
    }

    #[test]
    fn text_or_matching_and_name_outranks_description() {
        let mut ix = SearchIndex::new();
        put(
            &mut ix,
            "desc",
            "blue boot",
            "a shoe for running",
            "c",
            1,
            9,
        );
        put(&mut ix, "name", "red shoe", "comfortable", "c", 1, 1);
        put(&mut ix, "hat", "Sun HAT", "wide brim", "c", 1, 5);
        put(&mut ix, "none", "socks", "wool", "c", 1, 5);
        let page = ix.search(&q(Some("SHOE"), Sort::Relevance, 10));
        assert_eq!(skus(&page), ["name", "desc"]);
        assert_eq!(page.total, 2);
        let page = ix.search(&q(Some("shoe, hat! shoe"), Sort::Relevance, 10));
        // "hat" is rarer (higher idf) than "shoe".
        assert_eq!(skus(&page), ["hat", "name", "desc"]);
        // No text tokens: everything matches, relevance falls back to newest.
        for text in [None, Some(""), Some(" ,;- ")] {
            let page = ix.search(&q(text, Sort::Relevance, 10));
            assert_eq!(skus(&page), ["desc", "hat", "none", "name"]);
        }
    }

    #[test]
    fn category_filter_and_disjunctive_facets() {
        let mut ix = SearchIndex::new();
        put(&mut ix, "1", "shoe", "", "shoes", 100, 1);
        put(&mut ix, "2", "shoe", "", "shoes", 300, 2);
        put(&mut ix, "3", "boot shoe", "", "boots", 100, 3);
        put(&mut ix, "4", "hat", "", "hats", 100, 4);
        put(&mut ix, "5", "shoe", "", "Shoes", 100, 5);
        let mut query = q(Some("shoe"), Sort::Newest, 1);
        query.category = Some("shoes".into());
        query.max_price = Some(200);
        let page = ix.search(&query);
        assert_eq!(skus(&page), ["1"]);
        assert_eq!(page.total, 1);
        let want = [("Shoes", 1), ("boots", 1), ("shoes", 1)];
        assert_eq!(page.facets, want.map(|(c, n)| (c.to_owned(), n)).into());
    }

    #[test]
    fn price_range_is_inclusive() {
        let mut ix = SearchIndex::new();
        for p in [99, 100, 150, 200, 201] {
            put(&mut ix, &format!("p{p}"), "x", "", "c", p, 0);
        }
        let mut query = q(None, Sort::PriceAsc, 10);
        query.min_price = Some(100);
        query.max_price = Some(200);
        let page = ix.search(&query);
        assert_eq!(skus(&page), ["p100", "p150", "p200"]);
        assert_eq!(page.facets, BTreeMap::from([("c".to_owned(), 3)]));
        query.min_price = Some(300);
        assert_eq!(ix.search(&query).total, 0);
    }

    #[test]
    fn each_sort_order() {
        let mut ix = SearchIndex::new();
        put(&mut ix, "b", "lamp lamp", "lamp", "c", 500, 30);
        put(&mut ix, "a", "lamp", "", "c", 100, 10);
        put(&mut ix, "c", "desk", "lamp", "c", 100, i64::MAX);
        put(&mut ix, "d", "chair", "", "c", i64::MIN, i64::MIN);
        let case = |text, sort| skus(&ix.search(&q(text, sort, 10))).join(",");
        assert_eq!(case(Some("lamp"), Sort::Relevance), "b,a,c");
        assert_eq!(case(None, Sort::PriceAsc), "d,a,c,b");
        assert_eq!(case(None, Sort::PriceDesc), "b,a,c,d");
        assert_eq!(case(None, Sort::Newest), "c,b,a,d");
        assert_eq!(case(Some("lamp"), Sort::Newest), "c,b,a");
        assert_eq!(case(Some("lamp"), Sort::PriceDesc), "b,a,c");
        let page = ix.search(&q(Some("lamp"), Sort::Relevance, 2));
        assert_eq!(skus(&page), ["b", "a"]);
        assert_eq!(page.total, 3);
    }

    #[test]
    fn pagination_walks_every_sort_once_with_ties() {
        let mut ix = SearchIndex::new();
        for i in 0..50 {
            let name = if i % 3 == 0 { "lamp" } else { "lamp lamp desk" };
            put(&mut ix, &format!("s{i:02}"), name, "", "c", i % 5, i % 7);
        }
        for sort in SORTS {
            for text in [None, Some("lamp")] {
                let full = ix.search(&q(text, sort, 1000)).hits;
                assert_eq!(full.len(), 50);
                assert_strictly_ascending(&full);
                for limit in [1, 3, 7, 50, 100] {
                    let (hits, _, total) = walk(&[&ix], &q(text, sort, limit));
                    assert_eq!(total, 50);
                    assert_eq!(hits, full, "{sort:?} {text:?} {limit}");
                }
            }
        }
    }

    #[test]
    fn limit_zero_counts_but_returns_nothing() {
        let mut ix = SearchIndex::new();
        put(&mut ix, "a", "x", "", "c", 1, 1);
        let page = ix.search(&q(None, Sort::Newest, 0));
        assert!(page.hits.is_empty());
        assert_eq!(page.total, 1);
        assert_eq!(merge(vec![page], 0).3, None);
        assert_eq!(
            merge(Vec::new(), 10),
            (Vec::new(), BTreeMap::new(), 0, None)
        );
    }

    #[test]
    fn cursor_roundtrip_and_rejection() {
        let keys = [
            SortKey {
                primary: i64::MIN,
                sku: String::new(),
            },
            SortKey {
                primary: -1,
                sku: "SKU-1".into(),
            },
            SortKey {
                primary: i64::MAX,
                sku: "ünï/cödé 🚀?&=".into(),
            },
        ];
        for key in &keys {
            for sort in SORTS {
                let cursor = key.encode(sort);
                assert!(
                    cursor
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                );
                assert_eq!(SortKey::decode(&cursor, sort).as_ref(), Some(key));
                for other in SORTS.into_iter().filter(|&s| s != sort) {
                    assert_eq!(SortKey::decode(&cursor, other), None);
                }
                assert_eq!(SortKey::decode(&cursor[..cursor.len() - 1], sort), None);
                assert_eq!(SortKey::decode(&cursor.to_uppercase(), sort), None);
            }
        }
        let valid = keys[1].encode(Sort::Newest);
        let garbage = [
            String::new(),
            "n".into(),
            "zzz".into(),
            "n0123".into(),
            format!("{valid}ff"),
            format!("n{}", "0".repeat(16) + "ff"),
            format!("n{}", "é".repeat(20)),
            format!("n{}", "0".repeat(600)),
            valid.replace('n', "x"),
        ];
        for g in &garbage {
            assert_eq!(SortKey::decode(g, Sort::Newest), None, "{g:?}");
        }
        let long = SortKey {
            primary: 0,
            sku: "x".repeat(300),
        };
        assert_eq!(
            SortKey::decode(&long.encode(Sort::Newest), Sort::Newest),
            None
        );
        assert_eq!("price_desc".parse(), Ok(Sort::PriceDesc));
        assert_eq!("relevance".parse(), Ok(Sort::Relevance));
        assert_eq!("Newest".parse::<Sort>(), Err(ParseSortError));
    }

    #[test]
    fn score_key_preserves_descending_score_order() {
        let scores = [f64::MAX, 1e9, 3.5, 1.0, 1e-300, 0.0];
        let keys: Vec<i64> = scores.iter().map(|s| total_order_bits(-s + 0.0)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    }

    #[test]
    fn weird_input_never_panics() {
        let mut ix = SearchIndex::new();
        let huge = "ab ".repeat(100_000) + &"x".repeat(65) + " İstanbul ß ǅ 🚀 \u{0} ";
        put(&mut ix, "", "", "", "", 0, 0);
        put(&mut ix, "h", &huge, &huge, "🚀", i64::MAX, i64::MIN);
        // Over-long tokens are dropped: on both sides.
        assert_eq!(
            ix.search(&q(Some(&"x".repeat(64)), Sort::Relevance, 5))
                .total,
            0
        );
        assert_eq!(
            ix.search(&q(Some(&"x".repeat(65)), Sort::Relevance, 5))
                .total,
            2
        );
        assert_eq!(
            skus(&ix.search(&q(Some("İSTANBUL"), Sort::Relevance, 5))),
            ["h"]
        );
        assert_eq!(ix.search(&q(Some(&huge), Sort::Relevance, 5)).total, 1);
        // Only the first 32 distinct query terms count.
        let text: String = (0..40).map(|i| format!("t{i} ")).collect();
        put(&mut ix, "t", "t35", "", "c", 1, 1);
        assert_eq!(ix.search(&q(Some(&text), Sort::Relevance, 5)).total, 0);
        put(&mut ix, "t", "t31", "", "c", 1, 1);
        assert_eq!(ix.search(&q(Some(&text), Sort::Relevance, 5)).total, 1);
        let mut query = q(None, Sort::PriceDesc, 5);
        query.min_price = Some(i64::MAX);
        query.max_price = Some(i64::MIN);
        assert_eq!(ix.search(&query).total, 0);
        assert!(ix.remove("h") && ix.remove("") && ix.remove("t") && ix.terms.ids.is_empty());
    }

    fn fnv(s: &str) -> usize {
        s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }) as usize
    }

    #[test]
    fn merge_of_three_shards_equals_single_index() {
        let words = ["lamp", "desk", "chair", "oak", "steel", "red"];
        let cats = ["home", "office", "garden"];
        let mut single = SearchIndex::new();
        let mut shards = [SearchIndex::new(), SearchIndex::new(), SearchIndex::new()];
        for i in 0..300 {
            let sku = format!("sku-{i}");
            let name = format!("{} {}", words[i % 6], words[(i / 6) % 6]);
            let desc = words[(i * 7) % 6];
            let (cat, price, at) = (cats[i % 3], (i % 17) as i64 * 100, (i % 23) as i64);
            put(&mut single, &sku, &name, desc, cat, price, at);
            put(
                &mut shards[fnv(&sku) % 3],
                &sku,
                &name,
                desc,
                cat,
                price,
                at,
            );
        }
        assert!(shards.iter().all(|s| s.len() > 50));
        let refs: Vec<&SearchIndex> = shards.iter().collect();
        for sort in SORTS {
            for text in [None, Some("lamp oak")] {
                for (cat, min, max) in [(None, None, None), (Some("office"), Some(300), Some(1200))]
                {
                    for limit in [1, 7, 25, 100] {
                        let mut query = q(text, sort, limit);
                        query.category = cat.map(str::to_owned);
                        (query.min_price, query.max_price) = (min, max);
                        let (merged, facets, total) = walk(&refs, &query);
                        let (expect, facets1, total1) = walk(&[&single], &query);
                        assert_eq!((&facets, total), (&facets1, total1));
                        assert_eq!(merged.len() as u64, total);
                        assert_strictly_ascending(&merged);
                        // Relevance scores use per-shard statistics, so only
                        // the set of hits is comparable for that sort.
                        if sort == Sort::Relevance && text.is_some() {
                            let a: BTreeSet<_> = merged.iter().map(|h| &h.sku).collect();
                            let b: BTreeSet<_> = expect.iter().map(|h| &h.sku).collect();
                            assert_eq!(a, b);
                        } else {
                            assert_eq!(merged, expect, "{sort:?} {text:?} {cat:?} {limit}");
                        }
                    }
                }
            }
        }
    }

    type Model = BTreeMap<String, (String, String, String, i64, i64)>;

    fn expected(model: &Model, query: &Query) -> BTreeSet<String> {
        let mut terms: Vec<String> = Vec::new();
        for t in tokenize(query.text.as_deref().unwrap_or("")) {
            if !terms.contains(&t) && terms.len() < MAX_QUERY_TERMS {
                terms.push(t);
            }
        }
        let (min, max) = (
            query.min_price.unwrap_or(i64::MIN),
            query.max_price.unwrap_or(i64::MAX),
        );
        model
            .iter()
            .filter(|(_, (name, desc, cat, price, _))| {
                let toks: HashSet<String> =
                    tokenize(name).into_iter().chain(tokenize(desc)).collect();
                (terms.is_empty() || terms.iter().any(|t| toks.contains(t)))
                    && query.category.as_ref().is_none_or(|c| c == cat)
                    && (min..=max).contains(price)
            })
            .map(|(sku, _)| sku.clone())
            .collect()
    }

    proptest! {
        #[test]
        fn paginated_walk_never_duplicates_or_skips(
            ops in prop::collection::vec(
                (0u8..40, "(red|blue|oak|Lamp|x)( (red|blue|oak|lamp|ß))?", "[a-c ]{0,6}",
                 0u8..3, 0i64..5, 0i64..4, prop::bool::weighted(0.15)),
                0..80),
            text in prop::option::of("(red|oak|lamp|zzz)( (blue|c|b))?"),
            cat in prop::option::of(0u8..3),
            min in prop::option::of(0i64..3),
            max in prop::option::of(1i64..5),
            sort in 0usize..4,
            limit in 1usize..6,
            shards in 1usize..4,
        ) {
            let mut ixs: Vec<SearchIndex> = (0..shards).map(|_| SearchIndex::new()).collect();
            let mut model = Model::new();
            for (sku, name, desc, c, price, at, del) in ops {
                let sku = format!("s{sku}");
                let ix = &mut ixs[fnv(&sku) % shards];
                if del {
                    prop_assert_eq!(ix.remove(&sku), model.remove(&sku).is_some());
                } else {
                    let cat = format!("c{c}");
                    put(ix, &sku, &name, &desc, &cat, price, at);
                    model.insert(sku, (name, desc, cat, price, at));
                }
            }
            let mut query = q(text.as_deref(), SORTS[sort], limit);
            query.category = cat.map(|c| format!("c{c}"));
            (query.min_price, query.max_price) = (min, max);
            let refs: Vec<&SearchIndex> = ixs.iter().collect();
            let (hits, _, total) = walk(&refs, &query);
            assert_strictly_ascending(&hits);
            let got: Vec<String> = hits.into_iter().map(|h| h.sku).collect();
            let want = expected(&model, &query);
            prop_assert_eq!(got.len(), want.len(), "duplicates or skips");
            prop_assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
            prop_assert_eq!(total as usize, model_len_matching(&model, &query));
        }
    }

    fn model_len_matching(model: &Model, query: &Query) -> usize {
        expected(model, query).len()
    }
}
