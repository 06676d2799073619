import type { FastifyInstance } from 'fastify';

/**
 * What Filebeat, Logstash, Vector and Fluent Bit call on an Elasticsearch before and
 * around `_bulk`: version and license checks, cluster health, node info, and template,
 * ILM, data stream and pipeline set-up. Drover answers them as an 8.x server would for
 * a no-op, so each shipper starts and keeps running unchanged.
 */
const VERSION = {
  number: '8.17.0',
  build_flavor: 'default',
  build_type: 'tar',
  build_hash: 'drover',
  build_date: '2024-12-11T12:08:05.663969764Z',
  build_snapshot: false,
  lucene_version: '9.12.0',
  minimum_wire_compatibility_version: '7.17.0',
  minimum_index_compatibility_version: '7.0.0',
};
const CLUSTER = { cluster_name: 'drover', cluster_uuid: 'ZHJvdmVyLWRyb3Zlci1kcm92ZXI' };

export function registerElasticsearchCompat(app: FastifyInstance): void {
  const root = { name: 'drover', ...CLUSTER, version: VERSION, tagline: 'You Know, for Search' };
  app.get('/', async () => root);
  app.head('/', async (_req, reply) => reply.code(200).send());

  const license = {
    status: 'active',
    uid: '00000000-0000-0000-0000-000000000000',
    type: 'basic',
    issue_date: '2024-01-01T00:00:00.000Z',
    issue_date_in_millis: 1704067200000,
    max_nodes: 1000,
    max_resource_units: null,
    issued_to: 'drover',
    issuer: 'drover',
    start_date_in_millis: -1,
  };
  app.get('/_license', async () => ({ license }));
  app.get('/_xpack', async () => ({
    build: { hash: 'drover', date: VERSION.build_date },
    license: { uid: license.uid, type: 'basic', mode: 'basic', status: 'active' },
    features: Object.fromEntries(
      ['ilm', 'monitoring', 'security'].map((f) => [
        f,
        { available: f === 'ilm', enabled: f === 'ilm' },
      ]),
    ),
  }));
  app.get('/_cluster/health', async () => ({
    cluster_name: 'drover',
    status: 'green',
    timed_out: false,
    number_of_nodes: 1,
    number_of_data_nodes: 1,
    active_primary_shards: 0,
    active_shards: 0,
    relocating_shards: 0,
    initializing_shards: 0,
    unassigned_shards: 0,
    delayed_unassigned_shards: 0,
    number_of_pending_tasks: 0,
    number_of_in_flight_fetch: 0,
    task_max_waiting_in_queue_millis: 0,
    active_shards_percent_as_number: 100,
  }));
  const nodes = async (req: { headers: { host?: string } }) => ({
    _nodes: { total: 1, successful: 1, failed: 0 },
    cluster_name: 'drover',
    nodes: {
      drover: {
        name: 'drover',
        version: VERSION.number,
        roles: ['data', 'ingest', 'master'],
        http: { publish_address: req.headers.host ?? '127.0.0.1:4280' },
        ingest: { processors: [] },
      },
    },
  });
  app.get('/_nodes', nodes);
  app.get('/_nodes/*', nodes);

  const ack = async () => ({ acknowledged: true });
  const exists = async (_req: unknown, reply: { code(c: number): { send(): unknown } }) =>
    reply.code(200).send();
  // Templates, lifecycle policies, pipelines: accepted, and reported as present so
  // shippers do not try to install them on every start.
  for (const kind of ['_index_template', '_template', '_component_template']) {
    app.put(`/${kind}/:name`, ack);
    app.post(`/${kind}/:name`, ack);
    app.delete(`/${kind}/:name`, ack);
    app.head(`/${kind}/:name`, exists);
  }
  app.get('/_index_template/:name', async (req) => {
    const { name } = req.params as { name: string };
    return {
      index_templates: [
        { name, index_template: { index_patterns: [`${name}*`], composed_of: [], template: {} } },
      ],
    };
  });
  app.get('/_template/:name', async (req) => {
    const { name } = req.params as { name: string };
    return {
      [name]: { order: 0, index_patterns: [`${name}*`], settings: {}, mappings: {}, aliases: {} },
    };
  });
  app.get('/_cat/templates/*', async () => []);
  app.put('/_ilm/policy/:name', ack);
  app.get('/_ilm/policy/:name', async (req) => {
    const { name } = req.params as { name: string };
    return {
      [name]: {
        version: 1,
        modified_date: license.issue_date,
        policy: { phases: { hot: { min_age: '0ms', actions: {} } } },
      },
    };
  });
  app.put('/_ingest/pipeline/:name', ack);
  app.get('/_ingest/pipeline/:name', async (req) => {
    const { name } = req.params as { name: string };
    return { [name]: { description: 'accepted by Drover', processors: [] } };
  });
  app.put('/_data_stream/:name', ack);
  app.get('/_data_stream/:name', async (req) => {
    const { name } = req.params as { name: string };
    return {
      data_streams: [
        {
          name,
          timestamp_field: { name: '@timestamp' },
          indices: [],
          generation: 1,
          status: 'GREEN',
          template: name,
        },
      ],
    };
  });
  app.head('/_alias/:name', exists);
  // Filebeat 7.x asks for its ILM rollover alias and, if missing, whether an index of
  // that name exists (HEAD /:index answers yes): the alias must be there, as a write alias.
  app.get('/_alias/:name', async (req) => {
    const { name } = req.params as { name: string };
    return { [`${name}-000001`]: { aliases: { [name]: { is_write_index: true } } } };
  });
  app.put('/:index', async (req) => ({
    acknowledged: true,
    shards_acknowledged: true,
    index: (req.params as { index: string }).index,
  }));
  app.head('/:index', exists);
}
