"""fcam_deploy.metrics"""
