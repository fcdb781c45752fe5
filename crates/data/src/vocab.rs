//! The attribute vocabulary (CBIS-DDSM mass shapes and margins), grouped in
//! clusters, and the study-level selection of which attributes are used.

use serde::{Deserialize, Serialize};

/// A group of mutually described attributes; the losses apply a softmax per cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cluster {
    Shape,
    Margin,
}

impl Cluster {
    pub fn name(self) -> &'static str {
        match self {
            Cluster::Shape => "shape",
            Cluster::Margin => "margin",
        }
    }
}

macro_rules! attributes {
    ($($variant:ident = $name:literal, $cluster:ident, $short:literal;)*) => {
        /// One lesion attribute from the CBIS-DDSM vocabulary.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Attribute { $(#[serde(rename = $name)] $variant,)* }

        impl Attribute {
            /// Every attribute, in vocabulary order (shapes, then margins).
            pub const ALL: &'static [Attribute] = &[$(Attribute::$variant,)*];
            /// The CBIS-DDSM spelling, e.g. `ILL_DEFINED`.
            pub fn name(self) -> &'static str { match self { $(Attribute::$variant => $name,)* } }
            /// A short label for figures, e.g. `ILL`.
            pub fn short(self) -> &'static str { match self { $(Attribute::$variant => $short,)* } }
            pub fn cluster(self) -> Cluster { match self { $(Attribute::$variant => Cluster::$cluster,)* } }
        }
    };
}

attributes! {
    Round = "ROUND", Shape, "ROUND";
    Oval = "OVAL", Shape, "OVAL";
    Lobulated = "LOBULATED", Shape, "LOBUL";
    Irregular = "IRREGULAR", Shape, "IRREG";
    ArchitecturalDistortion = "ARCHITECTURAL_DISTORTION", Shape, "ARCH";
    LymphNode = "LYMPH_NODE", Shape, "LYMPH";
    AsymmetricBreastTissue = "ASYMMETRIC_BREAST_TISSUE", Shape, "ASYM";
    FocalAsymmetricDensity = "FOCAL_ASYMMETRIC_DENSITY", Shape, "FOCAL";
    Circumscribed = "CIRCUMSCRIBED", Margin, "CIRC";
    Microlobulated = "MICROLOBULATED", Margin, "MICRO";
    Obscured = "OBSCURED", Margin, "OBSC";
    IllDefined = "ILL_DEFINED", Margin, "ILL";
    Spiculated = "SPICULATED", Margin, "SPIC";
}

impl Attribute {
    /// Index in [`Attribute::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses one attribute name (case-insensitive; spaces read as underscores).
    pub fn parse(s: &str) -> Option<Attribute> {
        let norm = s.trim().to_ascii_uppercase().replace(' ', "_");
        Attribute::ALL.iter().copied().find(|a| a.name() == norm)
    }

    /// The attribute names, comma-separated, for error messages.
    pub fn valid_names() -> String {
        Attribute::ALL.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
    }
}

/// A set of attributes over the full vocabulary (a bit per attribute).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttrSet(pub u16);

impl AttrSet {
    pub const EMPTY: AttrSet = AttrSet(0);

    pub fn contains(self, a: Attribute) -> bool {
        self.0 & (1 << a.index()) != 0
    }
    pub fn insert(&mut self, a: Attribute) {
        self.0 |= 1 << a.index();
    }
    pub fn with(mut self, a: Attribute) -> Self {
        self.insert(a);
        self
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn union(self, other: AttrSet) -> AttrSet {
        AttrSet(self.0 | other.0)
    }
    pub fn iter(self) -> impl Iterator<Item = Attribute> {
        Attribute::ALL.iter().copied().filter(move |a| self.contains(*a))
    }

    /// Parses a CBIS-DDSM cell: one name, several joined by `-`
    /// (`LOBULATED-IRREGULAR`), or `N/A` / empty for none. On error, returns
    /// the offending part.
    pub fn parse_cbis(cell: &str) -> Result<AttrSet, String> {
        let cell = cell.trim();
        if cell.is_empty() || cell.eq_ignore_ascii_case("N/A") || cell.eq_ignore_ascii_case("NA") {
            return Ok(AttrSet::EMPTY);
        }
        let mut set = AttrSet::EMPTY;
        for part in cell.split('-') {
            match Attribute::parse(part) {
                Some(a) => set.insert(a),
                None => return Err(part.trim().to_string()),
            }
        }
        Ok(set)
    }

    /// `LOBULATED-IRREGULAR` style rendering of the members in one cluster (`N/A` if none).
    pub fn cbis_string(self, cluster: Cluster) -> String {
        let names: Vec<_> = self.iter().filter(|a| a.cluster() == cluster).map(|a| a.name()).collect();
        if names.is_empty() {
            "N/A".into()
        } else {
            names.join("-")
        }
    }
}

/// The attributes a study uses, in a fixed order, grouped by cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Vocabulary {
    attrs: Vec<Attribute>,
}

impl Default for Vocabulary {
    /// The paper's default: the four classic shapes and five margins.
    fn default() -> Self {
        use Attribute::*;
        Vocabulary { attrs: vec![Round, Oval, Lobulated, Irregular, Circumscribed, Microlobulated, Obscured, IllDefined, Spiculated] }
    }
}

impl Vocabulary {
    /// A vocabulary from attribute names; clusters are kept contiguous
    /// (shapes first) whatever the order given. Errors name the bad entry.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Vocabulary, String> {
        let mut attrs = Vec::new();
        for n in names {
            let a = Attribute::parse(n.as_ref())
                .ok_or_else(|| format!("unknown attribute `{}`; valid: {}", n.as_ref(), Attribute::valid_names()))?;
            if attrs.contains(&a) {
                return Err(format!("attribute `{}` listed twice", a.name()));
            }
            attrs.push(a);
        }
        if attrs.is_empty() {
            return Err("the attribute list is empty".into());
        }
        attrs.sort();
        Ok(Vocabulary { attrs })
    }

    /// The full CBIS-DDSM vocabulary.
    pub fn full() -> Vocabulary {
        Vocabulary { attrs: Attribute::ALL.to_vec() }
    }

    pub fn attributes(&self) -> &[Attribute] {
        &self.attrs
    }
    pub fn len(&self) -> usize {
        self.attrs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }
    pub fn names(&self) -> Vec<&'static str> {
        self.attrs.iter().map(|a| a.name()).collect()
    }

    /// Clusters present, each with the index range of its attributes in this vocabulary.
    pub fn clusters(&self) -> Vec<(Cluster, std::ops::Range<usize>)> {
        let mut out: Vec<(Cluster, std::ops::Range<usize>)> = Vec::new();
        for (i, a) in self.attrs.iter().enumerate() {
            match out.last_mut() {
                Some((c, r)) if *c == a.cluster() => r.end = i + 1,
                _ => out.push((a.cluster(), i..i + 1)),
            }
        }
        out
    }

    /// Multi-hot vector of `set` over this vocabulary (attributes outside it are dropped).
    pub fn multi_hot(&self, set: AttrSet) -> Vec<f32> {
        self.attrs.iter().map(|a| if set.contains(*a) { 1.0 } else { 0.0 }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_values_set_several_attributes_and_na_sets_none() {
        let s = AttrSet::parse_cbis("LOBULATED-IRREGULAR").unwrap();
        assert!(s.contains(Attribute::Lobulated) && s.contains(Attribute::Irregular));
        assert_eq!(s.iter().count(), 2);
        assert!(AttrSet::parse_cbis("N/A").unwrap().is_empty());
        let s = AttrSet::parse_cbis("IRREGULAR-ARCHITECTURAL_DISTORTION").unwrap();
        assert!(s.contains(Attribute::ArchitecturalDistortion));
        assert_eq!(AttrSet::parse_cbis("ROUND-BLOBBY").unwrap_err(), "BLOBBY");
    }

    #[test]
    fn default_vocabulary_is_four_shapes_and_five_margins_in_two_clusters() {
        let v = Vocabulary::default();
        assert_eq!(v.len(), 9);
        assert_eq!(v.clusters(), vec![(Cluster::Shape, 0..4), (Cluster::Margin, 4..9)]);
        let set = AttrSet::EMPTY.with(Attribute::Oval).with(Attribute::Spiculated).with(Attribute::LymphNode);
        assert_eq!(v.multi_hot(set), vec![0., 1., 0., 0., 0., 0., 0., 0., 1.]);
    }

    #[test]
    fn vocabulary_from_names_sorts_by_cluster_and_rejects_unknowns() {
        let v = Vocabulary::from_names(&["spiculated", "ROUND"]).unwrap();
        assert_eq!(v.names(), vec!["ROUND", "SPICULATED"]);
        let e = Vocabulary::from_names(&["ROUNDISH"]).unwrap_err();
        assert!(e.contains("ROUNDISH") && e.contains("ILL_DEFINED"), "{e}");
    }
}
