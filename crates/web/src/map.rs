//! The Qingdao map as inline SVG, drawn once at start from the real district boundaries and
//! metro lines (`data/qingdao/`): an equirectangular projection corrected for latitude, which
//! at a city's scale is indistinguishable from a web map.

use crate::escape;
use yunnao_city::District;

/// Drawing width in SVG units; the height follows the city's shape.
const WIDTH: f64 = 1000.0;

struct Projection {
    lon0: f64,
    lat1: f64,
    k: f64,
    cos: f64,
}

impl Projection {
    /// Fits the box (lon x0..x1, lat y0..y1) to `width` units; returns the projection and the
    /// drawing's height.
    fn fit(rect: geo::Rect, width: f64) -> (Projection, f64) {
        let cos = ((rect.min().y + rect.max().y) / 2.0).to_radians().cos();
        let k = width / ((rect.max().x - rect.min().x) * cos).max(1e-9);
        (
            Projection {
                lon0: rect.min().x,
                lat1: rect.max().y,
                k,
                cos,
            },
            (rect.max().y - rect.min().y) * k,
        )
    }

    /// SVG path data of a boundary, every ring closed: each ring simplified to what shows at
    /// whole units (Ramer–Douglas–Peucker, 1.25 units) and written as whole-unit relative steps,
    /// so the detailed coastline costs about as many bytes as the coarse outline did.
    fn path(&self, boundary: &geo::MultiPolygon) -> String {
        use geo::Simplify;
        let mut d = String::new();
        for polygon in boundary {
            for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
                let projected: geo::LineString = ring
                    .coords()
                    .map(|c| {
                        let (x, y) = self.xy(c.x, c.y);
                        geo::coord! {x: x, y: y}
                    })
                    .collect();
                let simplified = projected.simplify(1.25);
                let mut at: Option<(i64, i64)> = None;
                let mut steps = String::new();
                let mut points = 0;
                for c in simplified.coords() {
                    let here = (c.x.round() as i64, c.y.round() as i64);
                    match at {
                        None => steps.push_str(&format!("M{},{}", here.0, here.1)),
                        Some(previous) if previous == here => continue,
                        Some(previous) => steps.push_str(&format!(
                            "l{},{}",
                            here.0 - previous.0,
                            here.1 - previous.1
                        )),
                    }
                    at = Some(here);
                    points += 1;
                }
                // Rings smaller than a unit vanish at this scale.
                if points >= 3 {
                    d.push_str(&steps);
                    d.push('Z');
                }
            }
        }
        d
    }

    fn xy(&self, lon: f64, lat: f64) -> (f64, f64) {
        (
            (lon - self.lon0) * self.cos * self.k,
            (self.lat1 - lat) * self.k,
        )
    }
}

/// The map: one `<path class="district" data-code=…>` per district with its name, the metro
/// lines as polylines in their colours, stations as dots.
pub fn svg(districts: &[District]) -> String {
    use geo::BoundingRect;
    let rects: Vec<_> = districts
        .iter()
        .filter_map(|d| d.boundary.bounding_rect())
        .collect();
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for r in &rects {
        x0 = x0.min(r.min().x);
        y0 = y0.min(r.min().y);
        x1 = x1.max(r.max().x);
        y1 = y1.max(r.max().y);
    }
    let (projection, height) = Projection::fit(
        geo::Rect::new(geo::coord! {x: x0, y: y0}, geo::coord! {x: x1, y: y1}),
        WIDTH,
    );
    let mut out = format!(
        "<svg id=\"map\" viewBox=\"0 0 {WIDTH:.0} {height:.0}\" xmlns=\"http://www.w3.org/2000/svg\" role=\"group\" aria-label=\"青岛市\">"
    );
    let mut labels = String::new();
    for district in districts {
        let d = projection.path(&district.boundary);
        out.push_str(&format!(
            "<path class=\"district\" data-code=\"{}\" data-name=\"{}\" tabindex=\"0\" role=\"button\" aria-label=\"{}\" d=\"{d}\"><title>{}</title></path>",
            district.code,
            escape(&district.name),
            escape(&district.name),
            escape(&district.name)
        ));
        use geo::InteriorPoint;
        if let Some(p) = district.boundary.interior_point() {
            let (x, y) = projection.xy(p.x(), p.y());
            labels.push_str(&format!(
                "<text class=\"label\" x=\"{x:.0}\" y=\"{y:.0}\" data-code=\"{}\">{}</text>",
                district.code,
                escape(&district.name)
            ));
        }
    }
    if let Ok(metro) = yunnao_city::metro::metro() {
        for line in &metro.lines {
            let points: Vec<String> = line
                .stations
                .iter()
                .filter_map(|&i| metro.stations.get(i))
                .map(|station| {
                    let (x, y) = projection.xy(station.lon, station.lat);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            out.push_str(&format!(
                "<polyline class=\"metro\" stroke=\"{}\" points=\"{}\"><title>{}</title></polyline>",
                escape(&line.color),
                points.join(" "),
                escape(&line.name)
            ));
        }
        for station in &metro.stations {
            let (x, y) = projection.xy(station.lon, station.lat);
            out.push_str(&format!(
                "<circle class=\"station\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"1.6\"><title>{}</title></circle>",
                escape(&station.name)
            ));
        }
    }
    out.push_str(&labels);
    out.push_str("</svg>");
    out
}

/// Frame width of a district drawing; coordinates are whole units, so a cell centre fits in
/// two bytes.
const DISTRICT_WIDTH: f64 = 4000.0;

/// One district's unit grids as the overview draws them on a canvas when the district is
/// opened: the outline as an SVG path, one cell's shape, and every grid's centre packed as
/// little-endian u16 pairs (base64), so even 平度市's 200,000 grids travel in about 1 MB.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DistrictDrawing {
    pub code: String,
    pub name: String,
    pub grids: usize,
    pub width: f64,
    pub height: f64,
    /// SVG path data of the district's outline in the frame.
    pub outline: String,
    /// One whole cell's corners relative to its centre, in frame units.
    pub hexagon: Vec<(f64, f64)>,
    /// Grid centres, u16 x then u16 y, little-endian, base64.
    pub centres: String,
    /// (community code, name, index of its first grid, grids); a grid's code is its
    /// community's code and its serial (index − first + 1) in four digits.
    pub communities: Vec<(String, String, u32, u32)>,
    /// (grid index, open incidents), filled per request.
    pub open: Vec<(u32, i64)>,
}

pub fn district_drawing(grid: &yunnao_city::CityGrid, code: &str) -> Option<DistrictDrawing> {
    use base64::Engine;
    use geo::BoundingRect;
    let district = grid.districts.iter().find(|d| d.code == code)?;
    let cells = grid.district_cells(code)?;
    let (projection, height) = Projection::fit(district.boundary.bounding_rect()?, DISTRICT_WIDTH);
    let outline = projection.path(&district.boundary);
    let mut packed = Vec::with_capacity(cells.centres.len() * 4);
    for (lon, lat) in &cells.centres {
        let (x, y) = projection.xy(*lon, *lat);
        packed.extend_from_slice(&(x.round().clamp(0.0, 65_535.0) as u16).to_le_bytes());
        packed.extend_from_slice(&(y.round().clamp(0.0, 65_535.0) as u16).to_le_bytes());
    }
    Some(DistrictDrawing {
        code: district.code.clone(),
        name: district.name.clone(),
        grids: cells.centres.len(),
        width: DISTRICT_WIDTH,
        height: height.ceil(),
        outline,
        hexagon: cells
            .hexagon
            .iter()
            .map(|(dx, dy)| {
                (
                    (dx * projection.cos * projection.k * 100.0).round() / 100.0,
                    (-dy * projection.k * 100.0).round() / 100.0,
                )
            })
            .collect(),
        centres: base64::engine::general_purpose::STANDARD.encode(packed),
        communities: cells.communities,
        open: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_detailed_outlines_draw_within_the_old_size() {
        let districts = yunnao_city::districts().expect("districts");
        let svg = super::svg(&districts);
        let outlines: usize = svg
            .split("<path class=\"district\"")
            .skip(1)
            .map(|p| {
                p.split(" d=\"")
                    .nth(1)
                    .and_then(|d| d.split('"').next())
                    .map_or(0, str::len)
            })
            .sum();
        println!("overview outlines: {outlines} bytes");
        // The coarse outlines took 10,628 bytes of path data (890 vertices at one decimal).
        assert!(outlines <= 10_628, "{outlines} bytes of outlines");
        assert_eq!(svg.matches("class=\"district\"").count(), 10);
    }
}
