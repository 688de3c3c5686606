"""fcam_deploy.export"""
