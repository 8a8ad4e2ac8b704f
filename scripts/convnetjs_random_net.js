// Build a random ConvNetJS net with ConvNetJS itself and write its own net.toJSON().
//
//   node scripts/convnetjs_random_net.js CONVNETJS_DIR OUT.json [DEPTH SY SX CLASSES]
//
// The layers: conv (stride 2, pad 1) - pool - relu - conv - tanh - fc - softmax, so every
// layout detail (Vol order, padding, stride, the fc's (y, x, d) flattening) is exercised.
// Biases are made non-zero (ConvNetJS starts them at a constant).
"use strict";
const fs = require("fs");
const path = require("path");

const [dir, outFile, depth = "2", sy = "9", sx = "7", classes = "5"] = process.argv.slice(2);
if (!outFile) {
  console.error("usage: node convnetjs_random_net.js CONVNETJS_DIR OUT.json [DEPTH SY SX CLASSES]");
  process.exit(2);
}
const convnetjs = require(path.resolve(dir));
const layers = [
  { type: "input", out_sx: +sx, out_sy: +sy, out_depth: +depth },
  { type: "conv", sx: 3, sy: 3, filters: 4, stride: 2, pad: 1 },
  { type: "pool", sx: 2, stride: 1 },
  { type: "relu" },
  { type: "conv", sx: 2, filters: 3, stride: 1, pad: 0, activation: "tanh" },
  { type: "softmax", num_classes: +classes },
];
const net = new convnetjs.Net();
net.makeLayers(layers);
for (const layer of net.layers) {
  if (layer.biases) for (let i = 0; i < layer.biases.w.length; i++) layer.biases.w[i] = convnetjs.randn(0, 0.3);
}
fs.writeFileSync(outFile, JSON.stringify(net.toJSON()));
