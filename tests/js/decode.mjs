// Decodes a gzipped pprof file with npm `pprof-format` and prints a JSON summary:
// sample types, number of samples, mappings, and the sum of each sample type.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';

const bytes = gunzipSync(readFileSync(process.argv[2]));
const p = Profile.decode(bytes);
const str = (i) => p.stringTable.strings[Number(i)];
const sums = p.sampleType.map(() => 0);
for (const s of p.sample) s.value.forEach((v, i) => { sums[i] += Number(v); });
console.log(JSON.stringify({
  sampleTypes: p.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`),
  samples: p.sample.length,
  mappings: p.mapping.map((m) => str(m.filename)),
  functions: p.function.length,
  sums,
}));
