import { ChangeLog1767225600000 } from './1767225600000-change-log';
import { OriginProgress1767225600001 } from './1767225600001-origin-progress';
import { DeltaCalculator1767225600300 } from './1767225600300-delta-calculator';
import { RecordsConflicts1767225600002 } from './1767225600002-records-conflicts';
import { ProjectionCursor1767225600400 } from './1767225600400-projection-cursor';
import { RecordStatesWire1767225600500 } from './1767225600500-record-states-wire';
import { RecordStatesSoleWriter1767225600600 } from './1767225600600-record-states-sole-writer';
import { RejectedChanges1767225600700 } from './1767225600700-rejected-changes';
import { SoleWriterDeletes1767225600800 } from './1767225600800-sole-writer-deletes';
import { CriticalOperations1767225600900 } from './1767225600900-critical-operations';
import { ServerRecords1767225601000 } from './1767225601000-server-records';
import { CriticalRetention1767225601200 } from './1767225601200-critical-retention';
import { AgentPulls1767225601300 } from './1767225601300-agent-pulls';
import { CaptureCopy1767225601400 } from './1767225601400-capture-copy';
import { AgentPushHealth1767225601500 } from './1767225601500-agent-push-health';

/** In order. Hand-written; a new table or column is a new migration, never an edit of one that shipped. */
export const SERVER_STORE_MIGRATIONS = [ChangeLog1767225600000, OriginProgress1767225600001, RecordsConflicts1767225600002, DeltaCalculator1767225600300, ProjectionCursor1767225600400, RecordStatesWire1767225600500, RecordStatesSoleWriter1767225600600, RejectedChanges1767225600700, SoleWriterDeletes1767225600800, CriticalOperations1767225600900, ServerRecords1767225601000, CriticalRetention1767225601200, AgentPulls1767225601300, CaptureCopy1767225601400, AgentPushHealth1767225601500];
