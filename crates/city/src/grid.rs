//! The city grid (网格): Qingdao's 10 districts, 141 streets and towns and 2,120 communities
//! and villages (`data/qingdao/`), and unit grids that cover every district completely.
//!
//! Unit grids are H3 cells (resolution 10 by default, about 15,000 m²) over each district's
//! boundary. A cell wholly inside one district is one grid; a cell the boundary crosses is cut
//! along it, and each district's piece is a grid of that district, so every grid belongs to
//! exactly one district and the grids of a district add up to its whole area.
//!
//! Street and community boundaries are not in the data, so grids are given to them by a fixed,
//! documented rule: a district's grids in H3 index order (which keeps a cell's siblings next
//! to each other, so runs are compact patches) are split into consecutive runs, one per
//! community in code order, of equal length; a street holds the runs of its communities (so a
//! street's share is proportional to its number of communities). A grid's code is its
//! community's 12-digit statistical code (district 6 + street 3 + community 3) followed by a
//! 4-digit serial.
//!
//! Point lookup: the point's H3 cell, then a hash lookup; only in a cut cell is the point
//! tested against the pieces (with `geo`, boundary points included), and a point in a sliver
//! between the H3 cell and its straight-edged polygon falls back to the neighbours' pieces.

use crate::divisions::{Community, District, Street, parse_districts, parse_divisions};
use geo::{
    BooleanOps, BoundingRect, ChamberlainDuquetteArea, Coord, Distance, Euclidean, Intersects,
    MultiPolygon, Point, Rect,
};
use h3o::geom::{ContainmentMode, TilerBuilder};
use h3o::{CellIndex, LatLng, Resolution};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// One unit grid, kept small: the city has about 750,000 at resolution 10.
#[derive(Debug, Clone, Copy)]
struct Grid {
    cell: u64,
    community: u16,
    serial: u16,
    district: u8,
    /// Index into `pieces` when the cell is cut by a district boundary.
    piece: Option<u32>,
    area_m2: f32,
}

/// One district's grids as the map draws them: every grid as the shape of one whole H3 cell
/// at its cell's centre (cells cut by the boundary are clipped by the district's outline).
#[derive(Debug, Clone)]
pub struct DistrictCells {
    /// Cell centres (lon, lat), in grid-code order.
    pub centres: Vec<(f64, f64)>,
    /// (community code, name, index of its first grid in `centres`, grids).
    pub communities: Vec<(String, String, u32, u32)>,
    /// One whole cell's corners relative to its centre, degrees.
    pub hexagon: Vec<(f64, f64)>,
}

/// What a lookup or a code resolves to.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GridRef {
    /// 16 digits: district (6) + street (3) + community (3) + grid (4).
    pub code: String,
    /// The H3 cell (hex) the grid is, or is cut from.
    pub h3: String,
    pub district_code: String,
    pub district_name: String,
    pub street_code: String,
    pub street_name: String,
    pub community_code: String,
    pub community_name: String,
    pub area_m2: f64,
    /// Cut by a district boundary.
    pub partial: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LevelCoverage {
    pub code: String,
    pub name: String,
    pub grids: usize,
    pub area_m2: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DistrictCoverage {
    pub code: String,
    pub name: String,
    pub area_m2: f64,
    pub grids: usize,
    pub grid_area_m2: f64,
    /// Grid area over district area, in percent (plan item 11: 100).
    pub coverage_pct: f64,
    pub streets: usize,
    pub streets_with_grids: usize,
    pub communities: usize,
    pub communities_with_grids: usize,
    /// Grids with an assigned grid worker, in percent.
    pub staffed_pct: f64,
    pub street_coverage: Vec<LevelCoverage>,
}

/// The whole city grid, immutable once built; shared behind an `Arc`.
pub struct CityGrid {
    pub resolution: u8,
    h3_resolution: Resolution,
    pub districts: Vec<District>,
    pub streets: Vec<Street>,
    pub communities: Vec<Community>,
    grids: Vec<Grid>,
    /// Index of a community's first grid; its grids are consecutive.
    community_first: Vec<u32>,
    community_count: Vec<u32>,
    whole: HashMap<u64, u32>,
    cut: HashMap<u64, Vec<u32>>,
    pieces: Vec<MultiPolygon>,
    bbox: Rect,
}

impl std::fmt::Debug for CityGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CityGrid")
            .field("resolution", &self.resolution)
            .field("grids", &self.grids.len())
            .finish_non_exhaustive()
    }
}

fn cell_polygon(cell: CellIndex) -> MultiPolygon {
    MultiPolygon::from(cell)
}

type Tile = (u64, Option<MultiPolygon>, f64);

/// A district's cells in H3 order: (cell, the piece inside the district if the boundary cuts
/// the cell, area in m²).
fn tile(district: &District, res: Resolution) -> Result<Vec<Tile>, String> {
    let mut tiler = TilerBuilder::new(res)
        .containment_mode(ContainmentMode::Covers)
        .build();
    for polygon in &district.boundary {
        tiler
            .add(polygon.clone())
            .map_err(|e| format!("district {}: {e}", district.code))?;
    }
    let mut cells: Vec<(u64, bool)> = tiler
        .into_annotated_coverage()
        .map(|c| (u64::from(c.cell), c.is_fully_contained))
        .collect();
    cells.sort_unstable();
    cells.dedup_by_key(|c| c.0);
    let mut out = Vec::with_capacity(cells.len());
    let mut crossed = Vec::new();
    for (raw, whole) in cells {
        let cell = CellIndex::try_from(raw).map_err(|e| e.to_string())?;
        let polygon = cell_polygon(cell);
        if whole {
            out.push((raw, None, polygon.chamberlain_duquette_unsigned_area()));
        } else {
            crossed.push((raw, polygon));
        }
    }
    let mut pieces = Vec::with_capacity(crossed.len());
    cut(&district.boundary, crossed, &mut pieces);
    for (raw, piece) in pieces {
        let area = piece.chamberlain_duquette_unsigned_area();
        if area > 0.01 {
            out.push((raw, Some(piece), area));
        }
    }
    out.sort_unstable_by_key(|t| t.0);
    Ok(out)
}

/// Cells (few) below which, or outline vertices below which, cells are cut directly.
const CUT_DIRECTLY: (usize, usize) = (16, 512);

/// Cuts each cell by `outline`. A detailed coastline has thousands of vertices, so instead of
/// cutting every cell by all of it the cells are halved (at the median, along the longer side)
/// and the outline first clipped to each half's box: cell ∩ (outline ∩ box) = cell ∩ outline
/// for a box around the cell, and each cut sees only the outline nearby.
fn cut(
    outline: &MultiPolygon,
    mut cells: Vec<(u64, MultiPolygon)>,
    out: &mut Vec<(u64, MultiPolygon)>,
) {
    let vertices: usize = outline
        .iter()
        .map(|p| p.exterior().0.len() + p.interiors().iter().map(|r| r.0.len()).sum::<usize>())
        .sum();
    if cells.len() <= CUT_DIRECTLY.0 || vertices <= CUT_DIRECTLY.1 {
        for (raw, cell) in cells {
            out.push((raw, outline.intersection(&cell)));
        }
        return;
    }
    let Some(bounds) = boxed(&cells) else {
        return;
    };
    let along_x = bounds.width() >= bounds.height();
    let key = |cell: &MultiPolygon| {
        cell.bounding_rect()
            .map(|r| if along_x { r.center().x } else { r.center().y })
            .unwrap_or_default()
    };
    cells.sort_by(|a, b| key(&a.1).total_cmp(&key(&b.1)));
    let second = cells.split_off(cells.len() / 2);
    for half in [cells, second] {
        let Some(rect) = boxed(&half) else { continue };
        let near = outline.intersection(&MultiPolygon::new(vec![rect.to_polygon()]));
        cut(&near, half, out);
    }
}

/// The box around two boxes.
fn union(a: Rect, b: Rect) -> Rect {
    Rect::new(
        Coord {
            x: a.min().x.min(b.min().x),
            y: a.min().y.min(b.min().y),
        },
        Coord {
            x: a.max().x.max(b.max().x),
            y: a.max().y.max(b.max().y),
        },
    )
}

/// The box around some cells.
fn boxed(cells: &[(u64, MultiPolygon)]) -> Option<Rect> {
    cells
        .iter()
        .filter_map(|(_, cell)| cell.bounding_rect())
        .reduce(union)
}

impl CityGrid {
    /// Builds the grid at `resolution` (10 ≈ 15,000 m² per grid; tests use coarser ones).
    pub fn build(resolution: u8) -> Result<CityGrid, String> {
        let res = Resolution::try_from(resolution)
            .map_err(|_| format!("grid resolution {resolution} is not an H3 resolution"))?;
        let districts = parse_districts()?;
        let (streets, communities) = parse_divisions()?;
        let mut grids: Vec<Grid> = Vec::new();
        let mut pieces = Vec::new();
        let mut community_first = vec![0u32; communities.len()];
        let mut community_count = vec![0u32; communities.len()];
        // Tiling and cutting dominate (seconds at resolution 10): one district per thread.
        let tiled: Vec<Result<Vec<Tile>, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = districts
                .iter()
                .map(|district| scope.spawn(move || tile(district, res)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("tiling panicked".into())))
                .collect()
        });
        for ((d, district), tiles) in districts.iter().enumerate().zip(tiled) {
            let mut mine: Vec<(u64, Option<u32>, f64)> = Vec::new();
            for (cell, piece, area) in tiles? {
                let piece = piece.map(|p| {
                    pieces.push(p);
                    (pieces.len() - 1) as u32
                });
                mine.push((cell, piece, area));
            }
            let members: Vec<usize> = communities
                .iter()
                .enumerate()
                .filter(|(_, c)| c.district_code == district.code)
                .map(|(i, _)| i)
                .collect();
            if members.is_empty() {
                return Err(format!("district {} has no communities", district.code));
            }
            let n = mine.len();
            for (k, &community) in members.iter().enumerate() {
                let start = k * n / members.len();
                let end = (k + 1) * n / members.len();
                if end - start > 9999 {
                    return Err(format!(
                        "community {} would get {} grids: more than a 4-digit serial holds; use a coarser resolution",
                        communities[community].code,
                        end - start
                    ));
                }
                community_first[community] = grids.len() as u32;
                community_count[community] = (end - start) as u32;
                for (serial, &(cell, piece, area)) in mine[start..end].iter().enumerate() {
                    grids.push(Grid {
                        cell,
                        community: community as u16,
                        serial: serial as u16 + 1,
                        district: d as u8,
                        piece,
                        area_m2: area as f32,
                    });
                }
            }
        }
        let mut whole = HashMap::with_capacity(grids.len());
        let mut cut: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, grid) in grids.iter().enumerate() {
            if grid.piece.is_some() {
                cut.entry(grid.cell).or_default().push(i as u32);
            } else {
                whole.insert(grid.cell, i as u32);
            }
        }
        let bbox = districts
            .iter()
            .filter_map(|d| d.boundary.bounding_rect())
            .reduce(union)
            .ok_or("no districts")?;
        Ok(CityGrid {
            resolution,
            h3_resolution: res,
            districts,
            streets,
            communities,
            grids,
            community_first,
            community_count,
            whole,
            cut,
            pieces,
            bbox,
        })
    }

    pub fn len(&self) -> usize {
        self.grids.len()
    }

    /// (min lon, min lat, max lon, max lat) of the city.
    pub fn bbox(&self) -> (f64, f64, f64, f64) {
        (
            self.bbox.min().x,
            self.bbox.min().y,
            self.bbox.max().x,
            self.bbox.max().y,
        )
    }

    pub fn is_empty(&self) -> bool {
        self.grids.is_empty()
    }

    fn grid_code(&self, grid: &Grid) -> String {
        format!(
            "{}{:04}",
            self.communities[grid.community as usize].code, grid.serial
        )
    }

    fn reference(&self, index: u32) -> GridRef {
        let grid = &self.grids[index as usize];
        let community = &self.communities[grid.community as usize];
        let district = &self.districts[grid.district as usize];
        let street_name = self
            .streets
            .binary_search_by(|s| s.code.as_str().cmp(&community.street_code))
            .map(|i| self.streets[i].name.clone())
            .unwrap_or_default();
        GridRef {
            code: self.grid_code(grid),
            h3: format!("{:x}", grid.cell),
            district_code: district.code.clone(),
            district_name: district.name.clone(),
            street_code: community.street_code.clone(),
            street_name,
            community_code: community.code.clone(),
            community_name: community.name.clone(),
            area_m2: f64::from(grid.area_m2),
            partial: grid.piece.is_some(),
        }
    }

    /// The grid index containing (lon, lat), if the point is inside Qingdao.
    fn locate(&self, lon: f64, lat: f64) -> Option<u32> {
        if !lon.is_finite() || !lat.is_finite() {
            return None;
        }
        let point = Point::new(lon, lat);
        if !self.bbox.intersects(&point) {
            return None;
        }
        let cell = LatLng::new(lat, lon).ok()?.to_cell(self.h3_resolution);
        let raw = u64::from(cell);
        if let Some(&index) = self.whole.get(&raw) {
            return Some(index);
        }
        let in_piece = |candidates: &[u32]| {
            candidates.iter().copied().find(|&i| {
                self.grids[i as usize]
                    .piece
                    .is_some_and(|p| self.pieces[p as usize].intersects(&point))
            })
        };
        if let Some(found) = self.cut.get(&raw).and_then(|c| in_piece(c)) {
            return Some(found);
        }
        // The point lies in the sliver between its H3 cell and the cell's straight-edged
        // polygon: the neighbour's polygon holds it.
        let neighbours = cell.grid_disk::<Vec<_>>(1);
        // Far from every district (the sea, other cities): nothing near is a grid.
        if !self.cut.contains_key(&raw)
            && neighbours.iter().all(|n| {
                let raw = u64::from(*n);
                !self.whole.contains_key(&raw) && !self.cut.contains_key(&raw)
            })
        {
            return None;
        }
        for neighbour in &neighbours {
            let raw = u64::from(*neighbour);
            if let Some(found) = self.cut.get(&raw).and_then(|c| in_piece(c)) {
                return Some(found);
            }
            if let Some(&index) = self.whole.get(&raw)
                && cell_polygon(*neighbour).intersects(&point)
            {
                return Some(index);
            }
        }
        // A point exactly on a district boundary can miss every piece by a rounding error of
        // the clipping: if a district holds it, the nearest piece nearby is its grid.
        self.district_of(lon, lat)?;
        neighbours
            .iter()
            .filter_map(|c| self.cut.get(&u64::from(*c)))
            .flatten()
            .copied()
            .filter_map(|i| {
                let piece = self.grids[i as usize].piece?;
                Some((Euclidean.distance(&point, &self.pieces[piece as usize]), i))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, i)| i)
    }

    /// The grid containing (lon, lat), or `None` outside Qingdao's districts.
    pub fn lookup(&self, lon: f64, lat: f64) -> Option<GridRef> {
        self.locate(lon, lat).map(|i| self.reference(i))
    }

    /// Only the code of the grid at (lon, lat): the hot path of the benchmark.
    pub fn lookup_code(&self, lon: f64, lat: f64) -> Option<String> {
        self.locate(lon, lat)
            .map(|i| self.grid_code(&self.grids[i as usize]))
    }

    /// Whether (lon, lat) lies inside a district boundary.
    pub fn district_of(&self, lon: f64, lat: f64) -> Option<&District> {
        let point = Point::new(lon, lat);
        self.districts
            .iter()
            .find(|d| d.boundary.intersects(&point))
    }

    fn index_of(&self, code: &str) -> Option<u32> {
        if code.len() != 16 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let community = self
            .communities
            .binary_search_by(|c| c.code.as_str().cmp(&code[..12]))
            .ok()?;
        let serial: u32 = code[12..].parse().ok()?;
        (serial >= 1 && serial <= self.community_count[community])
            .then(|| self.community_first[community] + serial - 1)
    }

    pub fn get(&self, code: &str) -> Option<GridRef> {
        self.index_of(code).map(|i| self.reference(i))
    }

    /// The grid's outline (the H3 cell, or its piece inside the district) in WGS84.
    pub fn geometry(&self, code: &str) -> Option<MultiPolygon> {
        let grid = &self.grids[self.index_of(code)? as usize];
        Some(match grid.piece {
            Some(p) => self.pieces[p as usize].clone(),
            None => cell_polygon(CellIndex::try_from(grid.cell).ok()?),
        })
    }

    /// Every grid's code and outline, for exports and the PostGIS benchmark.
    pub fn for_each_geometry(&self, mut f: impl FnMut(&str, &MultiPolygon)) {
        for grid in &self.grids {
            let Ok(cell) = CellIndex::try_from(grid.cell) else {
                continue;
            };
            let outline = match grid.piece {
                Some(p) => self.pieces[p as usize].clone(),
                None => cell_polygon(cell),
            };
            f(&self.grid_code(grid), &outline);
        }
    }

    /// One district's grids for drawing, in code order.
    pub fn district_cells(&self, code: &str) -> Option<DistrictCells> {
        self.districts.iter().find(|d| d.code == code)?;
        let mut out = DistrictCells {
            centres: Vec::new(),
            communities: Vec::new(),
            hexagon: Vec::new(),
        };
        for (index, community) in self.communities.iter().enumerate() {
            if community.district_code != code {
                continue;
            }
            let first = self.community_first[index] as usize;
            let count = self.community_count[index] as usize;
            out.communities.push((
                community.code.clone(),
                community.name.clone(),
                out.centres.len() as u32,
                count as u32,
            ));
            for grid in &self.grids[first..first + count] {
                let Ok(cell) = CellIndex::try_from(grid.cell) else {
                    continue;
                };
                let centre = LatLng::from(cell);
                out.centres.push((centre.lng(), centre.lat()));
                if out.hexagon.is_empty() && grid.piece.is_none() {
                    out.hexagon = cell
                        .boundary()
                        .iter()
                        .map(|v| (v.lng() - centre.lng(), v.lat() - centre.lat()))
                        .collect();
                }
            }
        }
        Some(out)
    }

    /// Whether a district, street, community or grid code names something in the grid.
    pub fn is_known_prefix(&self, prefix: &str) -> bool {
        match prefix.len() {
            6 => self.districts.iter().any(|d| d.code == prefix),
            9 => self.streets.iter().any(|s| s.code == prefix),
            12 => self.communities.iter().any(|c| c.code == prefix),
            16 => self.index_of(prefix).is_some(),
            _ => false,
        }
    }

    /// Coverage per district (and per street inside it); `staffed` says whether a grid code
    /// has a grid worker.
    pub fn coverage(&self, staffed: impl Fn(&str) -> bool) -> Vec<DistrictCoverage> {
        let mut out: Vec<DistrictCoverage> = self
            .districts
            .iter()
            .map(|d| DistrictCoverage {
                code: d.code.clone(),
                name: d.name.clone(),
                area_m2: d.area_m2,
                grids: 0,
                grid_area_m2: 0.0,
                coverage_pct: 0.0,
                streets: self
                    .streets
                    .iter()
                    .filter(|s| s.district_code == d.code)
                    .count(),
                streets_with_grids: 0,
                communities: self
                    .communities
                    .iter()
                    .filter(|c| c.district_code == d.code)
                    .count(),
                communities_with_grids: 0,
                staffed_pct: 0.0,
                street_coverage: self
                    .streets
                    .iter()
                    .filter(|s| s.district_code == d.code)
                    .map(|s| LevelCoverage {
                        code: s.code.clone(),
                        name: s.name.clone(),
                        grids: 0,
                        area_m2: 0.0,
                    })
                    .collect(),
            })
            .collect();
        let mut staffed_count = vec![0usize; out.len()];
        let mut streets_seen: BTreeSet<&str> = BTreeSet::new();
        for grid in &self.grids {
            let d = grid.district as usize;
            let community = &self.communities[grid.community as usize];
            out[d].grids += 1;
            out[d].grid_area_m2 += f64::from(grid.area_m2);
            if staffed(&self.grid_code(grid)) {
                staffed_count[d] += 1;
            }
            streets_seen.insert(&community.street_code);
            if let Some(street) = out[d]
                .street_coverage
                .iter_mut()
                .find(|s| s.code == community.street_code)
            {
                street.grids += 1;
                street.area_m2 += f64::from(grid.area_m2);
            }
        }
        for (d, coverage) in out.iter_mut().enumerate() {
            coverage.coverage_pct = round2(100.0 * coverage.grid_area_m2 / coverage.area_m2);
            coverage.staffed_pct = if coverage.grids == 0 {
                0.0
            } else {
                round2(100.0 * staffed_count[d] as f64 / coverage.grids as f64)
            };
            coverage.streets_with_grids = coverage
                .street_coverage
                .iter()
                .filter(|s| s.grids > 0)
                .count();
            coverage.communities_with_grids = self
                .communities
                .iter()
                .enumerate()
                .filter(|(i, c)| c.district_code == coverage.code && self.community_count[*i] > 0)
                .count();
        }
        out
    }
}

fn round2(x: f64) -> f64 {
    // f32 grid areas sum to within 1e-6 of the district; 100.00 is what the plan counts.
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> CityGrid {
        CityGrid::build(8).expect("grid builds")
    }

    #[test]
    fn every_district_is_covered_completely_and_every_community_has_grids() {
        let grid = grid();
        let coverage = grid.coverage(|_| false);
        assert_eq!(coverage.len(), 10);
        for d in &coverage {
            assert!(
                (d.coverage_pct - 100.0).abs() < 0.02,
                "{} {} covered {}%",
                d.code,
                d.name,
                d.coverage_pct
            );
            assert_eq!(d.communities_with_grids, d.communities, "{}", d.name);
            assert_eq!(d.streets_with_grids, d.streets, "{}", d.name);
        }
        assert_eq!(grid.streets.len(), 141);
        assert_eq!(grid.communities.len(), 2120);
    }

    #[test]
    fn points_resolve_to_a_grid_of_their_own_district() {
        let grid = grid();
        // Deterministic pseudo-random points in the city's box; those inside a district must
        // resolve to a grid of that district, those outside to none.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (min, max) = (grid.bbox.min(), grid.bbox.max());
        let mut inside = 0;
        for _ in 0..20_000 {
            let lon = min.x + next() * (max.x - min.x);
            let lat = min.y + next() * (max.y - min.y);
            match (grid.district_of(lon, lat), grid.lookup(lon, lat)) {
                (Some(district), Some(found)) => {
                    inside += 1;
                    // A point on a shared boundary may go to either side; everywhere else the
                    // grid's district is the point's.
                    if found.district_code != district.code {
                        let theirs = grid
                            .districts
                            .iter()
                            .find(|d| d.code == found.district_code)
                            .expect("known district");
                        assert!(
                            theirs.boundary.intersects(&Point::new(lon, lat)),
                            "({lon}, {lat}) in {} went to {}",
                            district.code,
                            found.district_code
                        );
                    }
                    assert_eq!(grid.get(&found.code), Some(found));
                }
                (None, None) => {}
                (d, g) => panic!("({lon}, {lat}): district {d:?} but grid {g:?}"),
            }
        }
        assert!(inside > 5_000, "{inside} points inside");
    }

    /// A landmark in each district (government seats and squares), as the API tests use them.
    pub const LANDMARKS: [(&str, f64, f64); 10] = [
        ("370202", 120.3845, 36.0620),
        ("370203", 120.3550, 36.0880),
        ("370211", 120.1970, 35.9600),
        ("370212", 120.4680, 36.1070),
        ("370213", 120.4330, 36.1450),
        ("370214", 120.3960, 36.3070),
        ("370215", 120.4470, 36.3890),
        ("370281", 120.0330, 36.2640),
        ("370283", 119.9600, 36.7870),
        ("370285", 120.5170, 36.8880),
    ];

    #[test]
    fn a_landmark_of_each_district_resolves_to_a_grid_of_that_district() {
        let grid = grid();
        for (code, lon, lat) in LANDMARKS {
            assert_eq!(
                grid.district_of(lon, lat).map(|d| d.code.as_str()),
                Some(code)
            );
            assert_eq!(
                grid.lookup(lon, lat).map(|g| g.district_code),
                Some(code.to_owned())
            );
        }
    }

    #[test]
    fn unit_grids_follow_the_coastline() {
        let grid = grid();
        // 浮山湾 off 五四广场: sea, which the coarse 13-vertex outline of 市南区 covered.
        assert_eq!(grid.lookup(120.381, 36.0595), None);
        assert_eq!(grid.district_of(120.381, 36.0595).map(|d| &d.code), None);
        // The square itself, on the shore; the outline has hundreds of vertices, not 13.
        assert!(grid.lookup(120.3845, 36.0620).is_some());
        let shinan = &grid.districts[0];
        assert_eq!(shinan.name, "市南区");
        assert!(
            shinan
                .boundary
                .iter()
                .map(|p| p.exterior().0.len())
                .sum::<usize>()
                > 300
        );
    }

    #[test]
    fn codes_are_hierarchical_and_resolve_back() {
        let grid = grid();
        // 五四广场 (May Fourth Square), 市南区.
        let found = grid.lookup(120.3845, 36.0620).expect("in Qingdao");
        assert_eq!(found.district_code, "370202");
        assert_eq!(found.code.len(), 16);
        assert!(found.code.starts_with(&found.community_code));
        assert!(found.community_code.starts_with(&found.street_code));
        assert!(found.street_code.starts_with(&found.district_code));
        assert!(grid.is_known_prefix(&found.code));
        assert!(grid.is_known_prefix("370202"));
        assert!(!grid.is_known_prefix("110101"));
        assert!(grid.geometry(&found.code).is_some());
        // Outside: Beijing, the Yellow Sea, nonsense.
        assert_eq!(grid.lookup(116.40, 39.90), None);
        assert_eq!(grid.lookup(121.5, 35.5), None);
        assert_eq!(grid.lookup(f64::NAN, 36.0), None);
        assert_eq!(grid.get("3702020010019999"), None);
    }

    #[test]
    fn points_on_a_shared_district_boundary_resolve() {
        let grid = grid();
        // A vertex of 市南区's boundary that 市北区 shares: on the boundary of both.
        let shared = grid.districts[0]
            .boundary
            .0
            .iter()
            .flat_map(|p| p.exterior().coords())
            .find(|c| grid.districts[1].boundary.intersects(&Point::new(c.x, c.y)))
            .copied()
            .expect("市南区 and 市北区 share a boundary point");
        let found = grid
            .lookup(shared.x, shared.y)
            .expect("boundary point resolves");
        assert!(["370202", "370203"].contains(&found.district_code.as_str()));
    }
}
