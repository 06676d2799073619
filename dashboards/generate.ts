// Writes the dashboard artifacts: `npm run dashboards`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { renderArtifacts } from './artifacts.ts';

for (const [path, content] of Object.entries(renderArtifacts())) {
  const file = join(import.meta.dirname, path);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content);
  console.log(`wrote dashboards/${path}`);
}
