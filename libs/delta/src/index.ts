export * from './fold';
export * from './store';
export * from './pull.service';
export * from './merkle.service';
export * from './nudger';
export * from './pull-facts';
