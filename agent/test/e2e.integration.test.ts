import { e2eSuite } from './helpers/e2e-suite.js';

e2eSuite('ws');
