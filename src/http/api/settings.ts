// The settings page over HTTP (DESIGN §11). The client secret goes in, never out: responses carry
// hasClientSecret only. A PUT that changed the Client ID, secret, cloud or tenant also answers
// `credentialsCheck` (credentials-check.ts): Microsoft's verdict on the saved credentials, advice only.
import type { FastifyPluginAsync } from 'fastify';
import type { Services } from '../../services.js';
import { settingsPatchSchema, withoutUnchangedReadOnly } from '../../settings/settings.js';
import { actorOf } from '../actor.js';
import { parseInput } from '../../lib/validate.js';

export function settingsRoutes(services: Pick<Services, 'settings'>): FastifyPluginAsync {
  return async (app) => {
    app.get('/api/v1/settings', { config: { access: 'admin' } }, async () => services.settings.get());

    app.put('/api/v1/settings', { config: { access: 'admin' } }, async (request) => {
      // The body GET returned is accepted back: unchanged read-only fields are dropped before validation.
      const body = withoutUnchangedReadOnly(request.body, await services.settings.get());
      const patch = parseInput(settingsPatchSchema, body, 'settings');
      const { settings, credentialsCheck } = await services.settings.updateAndCheck(patch, actorOf(request));
      return credentialsCheck ? { ...settings, credentialsCheck } : settings;
    });
  };
}
