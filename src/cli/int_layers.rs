//! `kdtui bench --int-layers`: the integer engine's forms side by side on
//! each layer of the config's student, the figures `BitKernel::wins` is
//! set from.

use crate::engine::model::integer::speed::layer_speeds;
use crate::engine::model::integer::IntError;
use crate::engine::model::CnnConfig;
use crate::study::config::Config;

/// Weight x code widths timed: where the bit-serial form's plane pairs
/// (their product) are few, and where they are many.
const BITS: [(u32, u32); 6] = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (4, 4)];

/// The table, each form timed for about `seconds` a layer.
pub fn int_layers(config: &Config, seconds: f64) -> Result<String, IntError> {
    let network = CnnConfig::student(config);
    let rows = layer_speeds(&network, &BITS, seconds)?;
    let mut forms: Vec<&str> = Vec::new();
    for r in &rows {
        if !forms.contains(&r.form.name()) {
            forms.push(r.form.name());
        }
    }
    let mut out = format!(
        "integer layers of the student (widths {:?}, hidden {}): G multiply-adds/s on one thread, the layer's own (padding not counted); * the form the engine runs it in\n",
        network.widths, network.hidden
    );
    out.push_str(&format!("{:<6} {:<34}", "bits", "layer"));
    for f in &forms {
        out.push_str(&format!(" {f:>32}"));
    }
    out.push('\n');
    let mut seen: Vec<(u32, u32, &str)> = Vec::new();
    for r in &rows {
        let key = (r.w_bits, r.a_bits, r.layer.as_str());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        out.push_str(&format!("{:<6} {:<34}", format!("{}x{}", r.w_bits, r.a_bits), r.layer));
        for f in &forms {
            let cell = rows.iter().find(|x| (x.w_bits, x.a_bits, x.layer.as_str()) == key && x.form.name() == *f);
            let text = cell.map_or("-".to_string(), |x| format!("{:.1}{}", x.macs_per_sec / 1e9, if x.chosen { "*" } else { " " }));
            out.push_str(&format!(" {text:>32}"));
        }
        out.push('\n');
    }
    Ok(out)
}
