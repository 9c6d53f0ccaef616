//! The catalog the `browse`, `checkout` and `mixed` scenarios read and buy
//! from: `--products` products in `--categories` categories, created by the
//! admin over the API at setup (not measured).
//!
//! The catalog is named after its shape (`{catalog}-{products}x{categories}`,
//! e.g. `bench-1000x4`) and its SKUs are `{name}-{i:06}`: a second run with
//! the same options against the same node finds them (409 `sku_taken`) and
//! reuses them instead of growing the catalog, so repeated runs search the
//! same data. Names and descriptions are built from a small vocabulary, and
//! searches draw their `q` from it, so every search matches some products.

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::json;

use crate::setup::Api;

/// Threads creating products at setup.
const SETUP_THREADS: usize = 8;

/// Colours and the like: the first word of a product's name.
pub(crate) const ADJECTIVES: [&str; 8] = [
    "red", "blue", "green", "black", "silver", "wooden", "vintage", "compact",
];
/// What the product is: the second word of its name.
pub(crate) const NOUNS: [&str; 10] = [
    "lamp", "chair", "kettle", "backpack", "jacket", "speaker", "notebook", "bottle", "clock",
    "blanket",
];
/// In descriptions only.
pub(crate) const MATERIALS: [&str; 6] = ["cotton", "steel", "oak", "ceramic", "leather", "bamboo"];
/// Category names (beyond 8: `cat{k}`), prefixed with the catalog's name.
const CATEGORY_WORDS: [&str; 8] = [
    "home", "outdoor", "office", "kitchen", "travel", "audio", "apparel", "garden",
];

/// Options of the catalog and of browsing it.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Browse, checkout, mixed (catalog)")]
pub(crate) struct CatalogArgs {
    /// Products in the catalog (created at setup unless they exist).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) products: u32,
    /// Categories the products are spread over (round robin).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) categories: u32,
    /// Zipf exponent of SKU popularity (product pages, and the SKU a
    /// checkout buys): rank k is requested in proportion to 1/k^s; 0 is
    /// uniform.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) zipf_s: f64,
    /// Share of browse requests that are searches (the rest are product pages).
    #[arg(long, default_value_t = 0.2)]
    pub(crate) search_fraction: f64,
    /// Prefix of the catalog's name (letters and digits): another prefix
    /// makes a fresh catalog instead of reusing the products of an earlier
    /// run.
    #[arg(long, default_value = "bench")]
    pub(crate) catalog: String,
    /// Units on hand of each new product (large: checkouts do not run out).
    #[arg(long, default_value_t = 1_000_000_000)]
    pub(crate) stock: u64,
}

impl CatalogArgs {
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if !(self.zipf_s.is_finite() && self.zipf_s >= 0.0) {
            bail!("--zipf-s must be a number >= 0");
        }
        if !(0.0..=1.0).contains(&self.search_fraction) {
            bail!("--search-fraction must be between 0 and 1");
        }
        if self.catalog.is_empty()
            || self.catalog.len() > 16
            || !self.catalog.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            bail!("--catalog must be 1 to 16 letters or digits");
        }
        if self.stock > 1_000_000_000 {
            bail!("--stock must be at most 1 000 000 000");
        }
        Ok(())
    }
}

/// The catalog a run uses (JSON `config.catalog`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Catalog {
    /// `{catalog}-{products}x{categories}`.
    pub(crate) name: String,
    pub(crate) products: usize,
    pub(crate) categories: Vec<String>,
    /// Products created by this setup; the others existed already.
    pub(crate) created: usize,
    pub(crate) reused: usize,
    pub(crate) zipf_s: f64,
    pub(crate) search_fraction: f64,
    /// Every SKU, by popularity rank (rank 0 is the most requested).
    #[serde(skip)]
    pub(crate) skus: Vec<String>,
}

impl Catalog {
    /// The catalog's names without touching a server (setup fills in
    /// `created` and `reused`).
    pub(crate) fn plan(args: &CatalogArgs) -> Self {
        let name = format!("{}-{}x{}", args.catalog, args.products, args.categories);
        let skus = (0..args.products as usize)
            .map(|i| format!("{name}-{i:06}"))
            .collect();
        let categories = (0..args.categories as usize)
            .map(|k| match CATEGORY_WORDS.get(k) {
                Some(w) => format!("{name}-{w}"),
                None => format!("{name}-cat{k}"),
            })
            .collect();
        Self {
            name,
            products: args.products as usize,
            categories,
            created: 0,
            reused: 0,
            zipf_s: args.zipf_s,
            search_fraction: args.search_fraction,
            skus,
        }
    }

    /// Every word a search may ask for.
    pub(crate) fn words() -> impl Iterator<Item = &'static str> {
        ADJECTIVES
            .iter()
            .chain(NOUNS.iter())
            .chain(MATERIALS.iter())
            .copied()
    }

    /// The create body of product `i`. Its words are drawn from `i` by a
    /// fixed hash, independently of one another and of the category (round
    /// robin), so that any word and category have products in common.
    pub(crate) fn product(&self, i: usize, stock: u64) -> serde_json::Value {
        let pick = |salt: u64, n: usize| {
            let h = (i as u64 ^ salt.wrapping_mul(0xD6E8_FEB8_6659_FD93))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            ((h >> 32) % n as u64) as usize
        };
        let adjective = ADJECTIVES[pick(1, ADJECTIVES.len())];
        let noun = NOUNS[pick(2, NOUNS.len())];
        let material = MATERIALS[pick(3, MATERIALS.len())];
        let category = &self.categories[i % self.categories.len()];
        json!({
            "sku": self.skus[i],
            "name": format!("{}{} {noun} {i}", adjective[..1].to_uppercase(), &adjective[1..]),
            "description": format!(
                "A {adjective} {noun} made of {material}. Catalog {} of rayltics-bench.",
                self.name
            ),
            "price_cents": 500 + (i as u64 * 37) % 20_000,
            "currency": "USD",
            "category": category,
            "attributes": {"colour": adjective, "material": material},
            "stock": stock,
        })
    }
}

/// Creates the catalog's products that do not exist yet, a few at a time,
/// as the admin (`admin` is its access token).
pub(crate) fn setup(api: &Api, admin: &str, args: &CatalogArgs) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::plan(args);
    let n = catalog.products;
    let threads = SETUP_THREADS.min(n).max(1);
    let create = |i: usize| -> anyhow::Result<bool> {
        let body = catalog.product(i, args.stock);
        let (status, v) = api
            .call("POST", "/api/v1/products", Some(admin), Some(&body))
            .with_context(|| format!("creating product {i}"))?;
        match status {
            201 => Ok(true),
            409 if v["code"] == "sku_taken" => Ok(false),
            _ => bail!("creating product {}: status {status}: {v}", catalog.skus[i]),
        }
    };
    let created = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n).step_by(threads).try_fold(0usize, |created, i| {
                        create(i).map(|new| created + usize::from(new))
                    })
                })
            })
            .collect();
        handles.into_iter().try_fold(0usize, |sum, h| {
            let part = h
                .join()
                .map_err(|_| anyhow::anyhow!("a setup thread panicked"))??;
            anyhow::Ok(sum + part)
        })
    })?;
    catalog.created = created;
    catalog.reused = n - created;
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(products: u32, categories: u32) -> CatalogArgs {
        CatalogArgs {
            products,
            categories,
            zipf_s: 1.0,
            search_fraction: 0.2,
            catalog: "bench".into(),
            stock: 1000,
        }
    }

    #[test]
    fn names_follow_the_shape() {
        let c = Catalog::plan(&args(12, 10));
        assert_eq!(c.name, "bench-12x10");
        assert_eq!(c.skus[3], "bench-12x10-000003");
        assert_eq!(c.categories[0], "bench-12x10-home");
        assert_eq!(c.categories[9], "bench-12x10-cat9");
        let p = c.product(9, 1000);
        assert_eq!(p["sku"], "bench-12x10-000009");
        assert!(p["name"].as_str().unwrap().ends_with(" 9"), "{p}");
        assert_eq!(p["category"], "bench-12x10-cat9");
        assert_eq!(p["stock"], 1000);
        assert_eq!(p, c.product(9, 1000), "the same product every time");
        // Every product's words are among the searchable ones.
        let words: Vec<&str> = Catalog::words().collect();
        for i in 0..12 {
            let p = c.product(i, 1);
            let text = format!("{} {}", p["name"], p["description"]).to_lowercase();
            let hits = words.iter().filter(|w| text.contains(**w)).count();
            assert!(hits >= 3, "{text}");
        }
    }

    #[test]
    fn words_and_categories_are_independent() {
        // 1 000 products, 4 categories: every search word has products in
        // every category, in roughly even numbers.
        let c = Catalog::plan(&args(1000, 4));
        let mut hits = std::collections::HashMap::new();
        for i in 0..1000 {
            let p = c.product(i, 1);
            let text = format!("{} {}", p["name"], p["description"]).to_lowercase();
            for w in Catalog::words().filter(|w| text.contains(*w)) {
                *hits.entry((w, i % 4)).or_insert(0u32) += 1;
            }
        }
        for w in Catalog::words() {
            let per_cat: Vec<u32> = (0..4)
                .map(|k| hits.get(&(w, k)).copied().unwrap_or(0))
                .collect();
            let (min, max) = (per_cat.iter().min().unwrap(), per_cat.iter().max().unwrap());
            assert!(*min > 0 && *max < 3 * *min, "{w}: {per_cat:?}");
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(args(10, 2).check().is_ok());
        let mut a = args(10, 2);
        a.zipf_s = -1.0;
        assert!(a.check().is_err());
        let mut a = args(10, 2);
        a.search_fraction = 1.5;
        assert!(a.check().is_err());
        let mut a = args(10, 2);
        a.catalog = "no-dash".into();
        assert!(a.check().is_err());
    }
}
