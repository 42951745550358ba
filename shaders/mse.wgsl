// mse: squared error l = (x - y)^2 per element.
// bindings: 0 uniform Params | 1 x, 2 y through ld_x, ld_y | 3 out write

struct Params {
    n: u32,
    part_base: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn loss4(q: u32) -> vec4<f32> {
    let d = ld4_x(q) - ld4_y(q);
    return d * d;
}
