import { accountRoutes } from './account.js';
import { analyticsRoutes } from './analytics.js';
import { apiTokenRoutes } from './api-tokens.js';
import { authRoutes } from './auth.js';
import { consoleSessionRoutes } from '../console/session-routes.js';
import { certificateRoutes } from './certificates.js';
import { dashboardRoutes } from './dashboard.js';
import { groupRoutes } from './device-groups.js';
import { deviceRoutes } from './devices.js';
import { eventRoutes } from './events.js';
import { jobRoutes } from './jobs.js';
import { licenceRoutes } from './licences.js';
import { packetRoutes } from './packets.js';
import { profileRoutes } from './profiles.js';
import type { RouteSpec } from './route.js';
import { systemRoutes } from './system.js';
import { templateRoutes } from './templates.js';
import { userRoutes } from './users.js';

/** The route table: every route of the API, one file per resource. */
export const allRoutes: readonly RouteSpec[] = [
  ...systemRoutes,
  ...authRoutes,
  ...consoleSessionRoutes,
  ...userRoutes,
  ...accountRoutes,
  ...apiTokenRoutes,
  ...licenceRoutes,
  ...deviceRoutes,
  ...profileRoutes,
  ...groupRoutes,
  ...templateRoutes,
  ...certificateRoutes,
  ...eventRoutes,
  ...analyticsRoutes,
  ...packetRoutes,
  ...jobRoutes,
  ...dashboardRoutes,
];
