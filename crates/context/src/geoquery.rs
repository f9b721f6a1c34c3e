//! Geo-queries (CIM 009 §4.10): `georel` near (maxDistance / minDistance, metres on the WGS84
//! sphere), within, contains, intersects, disjoint, equals, overlaps; the query geometry is any
//! GeoJSON geometry given by `geometry` and `coordinates`.

use crate::errors;
use crate::model::geometry;
use geo::{BoundingRect, Contains, Distance, Haversine, Relate};
use yunnao_core::Problem;

#[derive(Debug, Clone)]
pub enum Relation {
    Near { min: Option<f64>, max: Option<f64> },
    Within,
    Contains,
    Intersects,
    Disjoint,
    Equals,
    Overlaps,
}

#[derive(Debug, Clone)]
pub struct GeoQuery {
    pub relation: Relation,
    pub geometry: geo::Geometry<f64>,
    /// Expanded name of the GeoProperty compared (`location` by default).
    pub property: String,
}

/// Metres per degree of latitude on the mean sphere (bounds for the pre-filter only).
const METRES_PER_DEGREE: f64 = 111_194.9;

impl GeoQuery {
    pub fn parse(
        georel: &str,
        geometry_type: &str,
        coordinates: &str,
        property: String,
    ) -> Result<Self, Problem> {
        let mut parts = georel.split(';');
        let relation = match parts.next().unwrap_or_default() {
            "near" => {
                let (mut min, mut max) = (None, None);
                // Clause 4.10: exactly one distance, a positive number of metres.
                for part in parts.by_ref() {
                    if min.is_some() || max.is_some() {
                        return Err(errors::bad_request(format!(
                            "georel {georel:?}: near takes one of maxDistance and minDistance"
                        )));
                    }
                    let (key, value) = part.split_once("==").ok_or_else(|| {
                        errors::bad_request(format!(
                            "georel {georel:?}: expected maxDistance==N or minDistance==N"
                        ))
                    })?;
                    let metres: f64 = value
                        .parse()
                        .ok()
                        .filter(|m: &f64| m.is_finite() && *m > 0.0)
                        .ok_or_else(|| {
                            errors::bad_request(format!(
                                "georel {georel:?}: {value:?} is not a distance in metres"
                            ))
                        })?;
                    match key {
                        "maxDistance" => max = Some(metres),
                        "minDistance" => min = Some(metres),
                        _ => {
                            return Err(errors::bad_request(format!(
                                "georel {georel:?}: unknown modifier {key:?}"
                            )));
                        }
                    }
                }
                if min.is_none() && max.is_none() {
                    return Err(errors::bad_request(
                        "georel near needs maxDistance or minDistance",
                    ));
                }
                Relation::Near { min, max }
            }
            "within" => Relation::Within,
            "contains" => Relation::Contains,
            "intersects" => Relation::Intersects,
            "disjoint" => Relation::Disjoint,
            "equals" => Relation::Equals,
            "overlaps" => Relation::Overlaps,
            other => {
                return Err(errors::bad_request(format!(
                    "georel {other:?} is not one of near, within, contains, intersects, disjoint, equals, overlaps"
                )));
            }
        };
        if parts.next().is_some() && !matches!(relation, Relation::Near { .. }) {
            return Err(errors::bad_request(format!(
                "georel {georel:?} takes no modifiers"
            )));
        }
        let coordinates: serde_json::Value = serde_json::from_str(coordinates)
            .map_err(|e| errors::bad_request(format!("coordinates are not a JSON array: {e}")))?;
        let geometry =
            geometry(&serde_json::json!({"type": geometry_type, "coordinates": coordinates}))
                .map_err(|reason| errors::bad_request(format!("geometry: {reason}")))?;
        Ok(Self {
            relation,
            geometry,
            property,
        })
    }

    /// A rectangle (min lon, min lat, max lon, max lat) that every match intersects, for the
    /// index pre-filter; `None` when the relation can match anywhere (disjoint, minDistance).
    pub fn prefilter(&self) -> Option<(f64, f64, f64, f64)> {
        match &self.relation {
            Relation::Disjoint => None,
            Relation::Near { max: None, .. } => None,
            Relation::Near { max: Some(max), .. } => {
                let r = self.geometry.bounding_rect()?;
                let widest = r.min().y.abs().max(r.max().y.abs());
                let dlat = max / METRES_PER_DEGREE;
                let dlon = max / (METRES_PER_DEGREE * widest.to_radians().cos().max(0.01));
                Some((
                    r.min().x - dlon,
                    r.min().y - dlat,
                    r.max().x + dlon,
                    r.max().y + dlat,
                ))
            }
            _ => self
                .geometry
                .bounding_rect()
                .map(|r| (r.min().x, r.min().y, r.max().x, r.max().y)),
        }
    }

    pub fn matches(&self, target: &geo::Geometry<f64>) -> bool {
        match &self.relation {
            Relation::Near { min, max } => {
                let distance = match &self.geometry {
                    geo::Geometry::Point(centre) => distance_metres(centre, target),
                    reference => distance_between(reference, target),
                };
                min.is_none_or(|m| distance >= m) && max.is_none_or(|m| distance <= m)
            }
            // The entity's geometry related to the query's (CIM 009 §4.10: "within" means the
            // entity lies within the query geometry).
            Relation::Within => target.relate(&self.geometry).is_within(),
            Relation::Contains => target.relate(&self.geometry).is_contains(),
            Relation::Intersects => target.relate(&self.geometry).is_intersects(),
            Relation::Disjoint => target.relate(&self.geometry).is_disjoint(),
            Relation::Equals => target.relate(&self.geometry).is_equal_topo(),
            Relation::Overlaps => target.relate(&self.geometry).is_overlaps(),
        }
    }
}

/// Distance in metres from a point to a geometry: 0 inside it, great-circle between points,
/// else to its closest point found where metres, not degrees, are compared (the closest
/// point in degrees is another one at high latitudes).
pub fn distance_metres(from: &geo::Point<f64>, to: &geo::Geometry<f64>) -> f64 {
    use geo::{Closest, ClosestPoint};
    if let geo::Geometry::Point(p) = to {
        return Haversine.distance(*from, *p);
    }
    if to.contains(from) {
        return 0.0;
    }
    let scale = from.y().to_radians().cos().max(1e-6);
    let projected = project(to, scale);
    let origin = geo::Point::new(from.x() * scale, from.y());
    match projected.closest_point(&origin) {
        Closest::Intersection(p) | Closest::SinglePoint(p) => {
            Haversine.distance(*from, geo::Point::new(p.x() / scale, p.y()))
        }
        Closest::Indeterminate => f64::INFINITY,
    }
}

/// Distance in metres between two geometries (0 where they meet), measured in a plane where a
/// degree of longitude is scaled to its length at the reference's latitude: exact enough for
/// the kilometres a `near` query spans.
pub fn distance_between(reference: &geo::Geometry<f64>, target: &geo::Geometry<f64>) -> f64 {
    use geo::{Euclidean, Intersects};
    if reference.intersects(target) {
        return 0.0;
    }
    let latitude = reference
        .bounding_rect()
        .map_or(0.0, |r| (r.min().y + r.max().y) / 2.0);
    let scale = latitude.to_radians().cos().max(1e-6);
    Euclidean.distance(&project(reference, scale), &project(target, scale)) * METRES_PER_DEGREE
}

/// The geometry with longitudes scaled by `scale` (the cosine of a latitude).
fn project(geometry: &geo::Geometry<f64>, scale: f64) -> geo::Geometry<f64> {
    use geo::MapCoords;
    geometry.map_coords(|c| geo::Coord {
        x: c.x * scale,
        y: c.y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Geometry, Point};

    #[test]
    fn relations_follow_the_specification() {
        // May Fourth Square (五四广场) and a square around it.
        let square =
            "[[[120.37,36.05],[120.40,36.05],[120.40,36.08],[120.37,36.08],[120.37,36.05]]]";
        let inside: Geometry<f64> = Point::new(120.384, 36.062).into();
        let outside: Geometry<f64> = Point::new(120.45, 36.10).into();
        let within =
            GeoQuery::parse("within", "Polygon", square, "location".into()).expect("within");
        assert!(within.matches(&inside));
        assert!(!within.matches(&outside));
        let disjoint =
            GeoQuery::parse("disjoint", "Polygon", square, "location".into()).expect("disjoint");
        assert!(disjoint.matches(&outside) && !disjoint.matches(&inside));
        let near = GeoQuery::parse(
            "near;maxDistance==1000",
            "Point",
            "[120.384,36.062]",
            "location".into(),
        )
        .expect("near");
        assert!(
            near.matches(&Point::new(120.390, 36.062).into()),
            "about 540 m east"
        );
        assert!(
            !near.matches(&Point::new(120.400, 36.062).into()),
            "about 1.4 km east"
        );
        let far = GeoQuery::parse(
            "near;minDistance==1000",
            "Point",
            "[120.384,36.062]",
            "location".into(),
        )
        .expect("min");
        assert!(far.matches(&Point::new(120.400, 36.062).into()));
        // Near a line: the distance to the line, not to its first point; at 85° north the
        // closest end in metres is the one a degree of longitude away.
        let line = GeoQuery::parse(
            "near;maxDistance==2000",
            "LineString",
            "[[0,60],[10,60]]",
            "location".into(),
        )
        .expect("line");
        assert!(line.matches(&Point::new(10.0, 60.009).into()));
        assert!(!line.matches(&Point::new(10.0, 60.03).into()));
        let polar = GeoQuery::parse(
            "near;maxDistance==20000",
            "Point",
            "[0,85]",
            "location".into(),
        )
        .expect("polar");
        let probe: Geometry<f64> = geo::LineString::from(vec![(1.0, 85.0), (0.0, 85.6)]).into();
        assert!(
            polar.matches(&probe),
            "{}",
            distance_metres(&Point::new(0.0, 85.0), &probe)
        );
        for (georel, geometry, coordinates) in [
            ("near", "Point", "[120,36]"),
            ("near;maxDistance==-5", "Point", "[120,36]"),
            ("near;maxDistance==0", "Point", "[120,36]"),
            ("near;maxDistance==inf", "Point", "[120,36]"),
            ("near;maxDistance==5;minDistance==1", "Point", "[120,36]"),
            ("inside", "Point", "[120,36]"),
            ("within", "Point", "[120"),
            ("within", "Circle", "[120,36]"),
        ] {
            let error = GeoQuery::parse(georel, geometry, coordinates, "location".into())
                .expect_err(georel);
            assert_eq!(error.status, 400, "{georel} {geometry}");
        }
    }
}
