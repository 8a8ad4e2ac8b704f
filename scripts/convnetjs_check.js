// Load a ConvNetJS snapshot with the real ConvNetJS and write its class probabilities.
//
//   node scripts/convnetjs_check.js CONVNETJS_DIR NET.json INPUTS.json OUT.json
//
// CONVNETJS_DIR: the installed npm package (node_modules/convnetjs). INPUTS.json: a list of
// images, each nested [C][H][W] (already normalised). OUT.json: {"probabilities": [[...], ...]},
// one row per image, from net.forward (prediction mode). A Vol stores (y, x, d) with
// w[((sx * y) + x) * depth + d].
"use strict";
const fs = require("fs");
const path = require("path");

const [dir, netFile, inFile, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error("usage: node convnetjs_check.js CONVNETJS_DIR NET.json INPUTS.json OUT.json");
  process.exit(2);
}
const convnetjs = require(path.resolve(dir));
const net = new convnetjs.Net();
net.fromJSON(JSON.parse(fs.readFileSync(netFile, "utf8")));
const images = JSON.parse(fs.readFileSync(inFile, "utf8"));
const probabilities = images.map((img) => {
  const depth = img.length, sy = img[0].length, sx = img[0][0].length;
  const v = new convnetjs.Vol(sx, sy, depth, 0.0);
  for (let d = 0; d < depth; d++)
    for (let y = 0; y < sy; y++)
      for (let x = 0; x < sx; x++) v.set(x, y, d, img[d][y][x]);
  return Array.from(net.forward(v, false).w);
});
fs.writeFileSync(outFile, JSON.stringify({ convnetjs: require(path.resolve(dir, "package.json")).version,
                                           probabilities }));
