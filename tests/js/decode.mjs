// Decodes a gzipped pprof file with npm `pprof-format` and prints a JSON summary:
// sample types, number of samples, mappings, the sum of each sample type, and per string label
// `key=value` the sums of the samples that carry it (`labelSums`).
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';

const bytes = gunzipSync(readFileSync(process.argv[2]));
const p = Profile.decode(bytes);
const str = (i) => p.stringTable.strings[Number(i)];
const sums = p.sampleType.map(() => 0);
for (const s of p.sample) s.value.forEach((v, i) => { sums[i] += Number(v); });
// Per string label `key=value`: the sum of each sample type over the samples that carry it.
const labelSums = {};
for (const s of p.sample) {
  for (const l of s.label) {
    if (Number(l.str) === 0) continue;
    const k = `${str(l.key)}=${str(l.str)}`;
    labelSums[k] ??= p.sampleType.map(() => 0);
    s.value.forEach((v, i) => { labelSums[k][i] += Number(v); });
  }
}
console.log(JSON.stringify({
  sampleTypes: p.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`),
  samples: p.sample.length,
  mappings: p.mapping.map((m) => str(m.filename)),
  functions: p.function.length,
  sums,
  labelSums,
}));
